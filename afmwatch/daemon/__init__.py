"""The watch-folder daemon: watch -> settle -> read -> infer -> act (sort, sidecar) -> journal.

`afmwatch.daemon.service.Service` wires the stages; each module owns one stage and one thread's job.
"""
