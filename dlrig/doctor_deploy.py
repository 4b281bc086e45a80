"""pyinfra deploy file for ``dlrig doctor`` (run with --dry): writes each host's facts and plan as JSON."""

from dlrig.resolve_cmd import collect_host_report

collect_host_report()
