"""Medians of an interleaved A/B run (scripts/ab.sh): one markdown row per
tidelog or raw cell, old against new, with every run's figure."""
import collections
import glob
import json
import statistics
import sys

runs = collections.defaultdict(lambda: {"old": [], "new": []})
for path in glob.glob(sys.argv[1] + "/*.json"):
    which = path.split("/")[-1].split("-")[0]
    for c in json.load(open(path))["cells"]:
        if c["system"].startswith(("tidelog", "raw")):
            runs[(c["system"], c["mode"], c["tasks"], c["record_bytes"])][which].append(c["ops_per_sec"])
print("| system | mode | tasks | old ops/s (median of 3) | new ops/s | new/old | old runs | new runs |")
print("|---|---|---|---|---|---|---|---|")
for key in sorted(runs):
    old, new = runs[key]["old"], runs[key]["new"]
    if old and new:
        mo, mn = statistics.median(old), statistics.median(new)
        fmt = lambda xs: ", ".join(f"{x:,.0f}" for x in sorted(xs))
        print(f"| {key[0]} | {key[1]} | {key[2]} | {mo:,.0f} | {mn:,.0f} | {mn / mo:.2f} | {fmt(old)} | {fmt(new)} |")
