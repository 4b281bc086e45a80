"""First provisioning vs offline re-provisioning from the cache (issue 12): wall time and bytes.

    sudo python3 benchmarks/reprovision.py [--json] [--profile FILE] [--bandwidth-mbit 100]

Runs the round trip of tests/fixtures/roundtrip.py (CPU profile: base, conda, pytorch, jupyter, ssh
on a Debian 12 test host; torch 2.13.0+cpu from a local index, fastai/JupyterLab from PyPI) and
reports each step's wall time and the bytes fetched from network sources:

* first run: what the local index + installer server sent (its access log's sum: the stand-in for
  download.pytorch.org and GitHub), the apt .debs that landed in cache_dir (from the Debian mirror)
  and the wheels pip took from PyPI (the wheelhouse's wheels that the local index does not hold;
  pip's own http cache stays empty here: the responses it gets are not cacheable);
* offline run: every source is a dead port, so nothing can be fetched (a fetch fails the run); what
  was added to cache_dir is shown as the check.

``--bandwidth-mbit N``: also a MODELLED home link. Here the first run fetches from 127.0.0.1 and a
nearby mirror at memory speed, so its time is nearly all install work. With N, the first apply is
run once more, alone, on a throwaway host with its own empty cache_dir, every byte it fetches paced
through one shared N Mbit/s pipe (tests/fixtures/homelink.py: the local index paces its bodies, apt
and pip go through a pacing forward proxy); the offline run is then compared with that first run
too. The round trip itself (what the host test proves) is unchanged.

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
    ap.add_argument("--bandwidth-mbit", type=float, metavar="N",
                    help="also time the first apply with its sources paced to N Mbit/s (a modelled home link)")
    args = ap.parse_args()
    if args.bandwidth_mbit is not None and args.bandwidth_mbit <= 0:
        ap.error(f"--bandwidth-mbit: {args.bandwidth_mbit} is not a bandwidth; give Mbit/s > 0, e.g. 100")
    index = RT.torch_index()
    linked = None
    with tempfile.TemporaryDirectory(prefix="dlrig-reprovision-") as work:
        if args.bandwidth_mbit:  # first: a proxy or mirror problem shows before the long round trip
            linked = RT.first_apply_over_link(IMAGE.golden_image(), index, Path(work), args.bandwidth_mbit)
        rt = RT.round_trip(IMAGE.golden_image(), index, Path(work))
    if linked:
        rt.profile[f"first apply @ {args.bandwidth_mbit:g} Mbit/s"] = linked["profile"]
    result = RT.measures(rt, index)
    if linked:
        offline = rt.timings["locked apply (offline)"]
        result["modelled_link"] = {
            "mbit": linked["mbit"], "first_apply_s": round(linked["seconds"], 1),
            "link_bytes": linked["link_bytes"], "time_ratio": round(offline / linked["seconds"], 3)}
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
    if linked:
        ml = result["modelled_link"]
        print(f"time ratio offline/first, MEASURED over a modelled home link of {ml['mbit']:g} Mbit/s (first apply "
              f"{ml['first_apply_s']:.1f} s, {ml['link_bytes'] / 1e6:.1f} MB crossed the link): {ml['time_ratio']:.2f} "
              "(target <= 0.33)")
    print_profile(rt.profile)
    print("identical after the round trip: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))


if __name__ == "__main__":
    main()
