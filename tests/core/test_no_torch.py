"""`import sagc` (the core) must work with torch absent: it is numpy-only by design."""

import subprocess
import sys
import textwrap


def test_import_sagc_with_torch_blocked():
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {'torch', 'transformers', 'trl', 'accelerate'}:
                    raise ImportError('blocked for test: ' + name)
        sys.meta_path.insert(0, Block())
        import sagc, sagc.sim, sagc.trace, sagc.cli
        c = sagc.make('sagc')
        print(c.decide([2, 4]).group_size)
        assert not any(m.split('.')[0] in {'torch', 'transformers', 'trl'} for m in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
