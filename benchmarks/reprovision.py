"""First provisioning vs offline re-provisioning from the cache (issue 12): wall time and bytes.

    sudo python3 benchmarks/reprovision.py [--json]

Runs the round trip of tests/fixtures/roundtrip.py (CPU profile: base, conda, pytorch, jupyter, ssh
on a Debian 12 test host; torch 2.13.0+cpu from a local index, fastai/JupyterLab from PyPI) and
reports each step's wall time and the bytes fetched from network sources:

* first run: what the local index + installer server sent (its access log's sum: the stand-in for
  download.pytorch.org and GitHub), the apt .debs that landed in cache_dir (from the Debian mirror)
  and the wheels pip took from PyPI (the wheelhouse's wheels that the local index does not hold;
  pip's own http cache stays empty here: the responses it gets are not cacheable);
* offline run: every source is a dead port, so nothing can be fetched (a fetch fails the run); what
  was added to cache_dir is shown as the check.

Target (issue 12): re-provisioning <= 1/3 of the first run's time and <= 1% of its bytes.
Measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fixtures from this checkout

from dlrig.testing import image as IMAGE  # noqa: E402
from tests.fixtures import roundtrip as RT  # noqa: E402


def by_role(profile: list) -> dict[str, float]:
    """Seconds per role ("role | operation" names) plus the run's own phases."""
    out: dict[str, float] = {}
    for what, seconds in profile:
        role = what.partition(" | ")[0] if " | " in what else what
        out[role] = out.get(role, 0.0) + seconds
    return out


def print_profile(profile: dict) -> None:
    """Per role and per operation (over 1 s), first apply next to the offline one."""
    runs = list(profile)
    roles = {run: by_role(ops) for run, ops in profile.items()}
    print(f"\n{'phase / role':34} " + " ".join(f"{r[:20]:>20}" for r in runs))
    for role in dict.fromkeys(k for r in runs for k in roles[r]):
        print(f"{role:34} " + " ".join(f"{roles[r].get(role, 0.0):20.1f}" for r in runs))
    for run, ops in profile.items():
        print(f"\n{run}: operations over 1 s")
        for what, seconds in ops:
            if seconds >= 1:
                print(f"  {seconds:7.1f}  {what}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", type=Path, help="also write each apply's per-operation profile (JSON) here")
    args = ap.parse_args()
    index = RT.torch_index()
    with tempfile.TemporaryDirectory(prefix="dlrig-reprovision-") as work:
        rt = RT.round_trip(IMAGE.golden_image(), index, Path(work))
    result = RT.measures(rt, index)
    if args.profile:
        args.profile.write_text(json.dumps(rt.profile, indent=1))
    same = result["identical"]
    first_bytes, lock_bytes = result["first_apply_bytes"], result["lock_fetched_bytes"]
    pypi_bytes, offline_added = result["first_apply_pypi_bytes"], result["offline_cache_growth_bytes"]
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{'step':34} {'wall s':>8}")
    for k, v in rt.timings.items():
        print(f"{k:34} {v:8.1f}")
    print(f"\nfirst apply: {first_bytes / 1e6:.1f} MB fetched (local index/installer served "
          f"{rt.served.get('bytes', 0) / 1e6:.1f} MB in {rt.served.get('requests', 0)} requests, PyPI "
          f"{pypi_bytes / 1e6:.1f} MB; "
          f"cache_dir after it: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in rt.cache_after_first.items()) + ")")
    print(f"dlrig lock: {lock_bytes / 1e6:.1f} MB fetched; {result['lock_uv_cache_bytes'] / 1e6:.1f} MB of locked "
          "wheels unpacked into cache_dir/uv")
    print(f"offline re-provisioning: 0 bytes from the network (all sources dead), cache grew by {offline_added} B")
    print(f"time ratio offline/first, as measured: {result['time_ratio']:.2f} (target <= 0.33); bytes ratio 0 "
          "(target <= 0.01)")
    print(f"time ratio offline/first, first run's {first_bytes / 1e6:.0f} MB modeled at {result['model_mbit']} Mbit/s "
          f"({result['first_apply_modeled_s']:.0f} s): {result['time_ratio_modeled']:.2f}")
    print_profile(rt.profile)
    print("identical after the round trip: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))


if __name__ == "__main__":
    main()
