"""The bad-input catalogue (issue 10): shared helpers live in bad_input_cli.py (see its docstring).

Import them as `from bad_input_cli import run_cli, assert_clean_failure`; they are re-exported
here for modules that import them from conftest.
"""

from bad_input_cli import CliResult, assert_clean_failure, run_cli  # noqa: F401
