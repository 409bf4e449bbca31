"""The watch-folder daemon: watch -> settle -> read -> infer -> act (sort, sidecar) -> journal.

`afmwatch.daemon.service.Service` wires the stages; each module owns one stage and one thread's job.
Every stage has the lifecycle of `afmwatch.daemon.stage.Stage` and shares one `afmwatch.daemon.runtime.Runtime`.
"""
