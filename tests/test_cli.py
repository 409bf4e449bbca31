import subprocess
import sys


def test_building_the_command_line_does_not_import_torch():
    """`afmwatch inspect` or `status` must not pay seconds for torch before doing anything."""
    code = "import sys, afmwatch.cli as c; c.build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_library_log_lines_go_to_stderr_before_logging_is_configured(tmp_path):
    # a fresh interpreter: nothing has configured logging, as in a user's script that calls the library
    script = (
        "from afmwatch.synth.sets import generate_classify_set\n"
        f"generate_classify_set({str(tmp_path / 'set')!r}, 2, seed=1, size=32, gwy=False, previews=False)\n"
        "print('RESULT')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout == "RESULT\n"
    assert "synth_classify" in done.stderr


def test_library_debug_lines_stay_silent_before_logging_is_configured(samples):
    script = f"from afmwatch.readers import read_scan\nread_scan({str(samples / 'jpk/sample_0.jpk')!r})\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout == "" and done.stderr == ""
