import subprocess
import sys


def test_building_the_command_line_does_not_import_torch():
    """`afmwatch inspect` or `status` must not pay seconds for torch before doing anything."""
    code = "import sys, afmwatch.cli as c; c.build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
