import pytest

from core_streams import lognormal_step


@pytest.fixture
def step_stream():
    return lognormal_step
