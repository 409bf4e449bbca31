"""No thread dies silently: a stage whose loop raises takes the service down with a log line and exit
status 70 (EX_SOFTWARE, so that systemd restarts it), after draining what the other stages can."""

from __future__ import annotations

import pytest
from daemon_support import tiny_model, write_config
from structlog.testing import capture_logs

from afmwatch.config import load_config
from afmwatch.daemon.service import EX_SOFTWARE, Service

pytestmark = pytest.mark.slow


def test_a_stage_that_dies_stops_the_service_with_exit_70(tmp_path):
    model = tiny_model(tmp_path / "tiny.safetensors")
    config = load_config(write_config(tmp_path, model, workers={"reader_processes": False}))
    service = Service(config)
    service.start()

    def bug() -> None:
        raise ZeroDivisionError("a bug in the settle loop")

    with capture_logs() as logs:
        service.settler._take_touched = bug  # type: ignore[method-assign]
        code = service.serve()  # returns once the dead stage has stopped the service
    assert code == EX_SOFTWARE
    assert service.died == "afmwatch-settle" and not service.settler.alive()
    events = [e["event"] for e in logs]
    assert "stage_died" in events and "service_stopping" in events and "daemon_stopped" in events
