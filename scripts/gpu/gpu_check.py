#!/usr/bin/env python3
"""The lcam GPU check (run through gpu-check.sh, in a bundle made by `cargo xtask gpu-bundle`).

Parts, each reported as pass / fail / skipped with the reason; a crash or a timeout in one does
not stop the others:

- environment: python, torch, the device and driver (nvidia-smi), NVRTC and where it was found;
- startup: every binary of bin/ starts (no missing library) — also without a GPU;
- ptx: lcam-cuda's kernels compile with NVRTC for sm_80/sm_90 (`--fmad=false`; NVRTC only);
- gpu-tests: lcam-cuda's GPU tests (golden fixtures, the fused step vs lcam-core, the state
  round trip, null pointers) with LCAM_REQUIRE_GPU=1;
- replay: every golden, golden-groups and randomized trace through `lcam replay --adapter cuda`,
  the maximum relative error against the expected trajectory;
- bench: gpu_bench — WRN-28-10 step time vs a device-to-device copy, host queueing time, host
  synchronisations per step over the timed loop;
- torch: the wheel installed into a scratch directory, WRN training img/s with
  torch.optim.SGD(fused=True) vs lcam.torch.LCAM (same model, same batches), torch-side
  synchronisations per LCAM step.

Only the standard library is needed (torch for the last part).
"""
import argparse
import ctypes
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "bin")
PART_TIMEOUT = {"startup": 30, "ptx": 45, "gpu-tests": 90, "replay": 120, "bench": 60,
                "torch": 120}
# The whole check ends within 8 minutes: every command's timeout is cut to what is left of this.
BUDGET_S = 470
DEADLINE = time.time() + BUDGET_S


def find_nvrtc_dir():
    """The torch wheel's NVRTC directory (site-packages/nvidia/cu13/lib), or None."""
    for entry in sys.path:
        for pattern in ("nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib", "nvidia/cu*/lib"):
            for d in sorted(glob.glob(os.path.join(entry, pattern))):
                if glob.glob(os.path.join(d, "libnvrtc.so*")):
                    return d
    return None


def nvrtc_version(nvrtc_dir):
    names = sorted(glob.glob(os.path.join(nvrtc_dir, "libnvrtc.so*"))) if nvrtc_dir else []
    names = [n for n in names if "builtins" not in n] + ["libnvrtc.so.13", "libnvrtc.so"]
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        major, minor = ctypes.c_int(), ctypes.c_int()
        if lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) == 0:
            return f"{major.value}.{minor.value}", name
    return None, None


def driver_status():
    """(None, info) when a CUDA driver with a device is usable, else (reason, info)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        return f"no CUDA driver (libcuda.so.1: {e})", {}
    rc = cuda.cuInit(0)
    if rc != 0:
        return f"no CUDA driver (cuInit returned {rc})", {}
    count, version = ctypes.c_int(), ctypes.c_int()
    cuda.cuDeviceGetCount(ctypes.byref(count))
    cuda.cuDriverGetVersion(ctypes.byref(version))
    info = {"devices": count.value,
            "driver_cuda_version": f"{version.value // 1000}.{version.value % 1000 // 10}"}
    if count.value < 1:
        return "no CUDA driver (the driver sees no device)", info
    return None, info


def run(cmd, env, timeout, cwd=HERE):
    """(returncode or 'timeout' or 'crash', stdout, stderr, seconds); the timeout is cut to
    what is left of the check's budget."""
    t0 = time.time()
    timeout = max(1.0, min(timeout, DEADLINE - t0))
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr, time.time() - t0
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return "timeout", out, err, time.time() - t0
    except OSError as e:
        return "crash", "", str(e), time.time() - t0


def json_line(out):
    """(the object of the last `json: {...}` line or {}, the other lines)."""
    data = {}
    for line in out.splitlines():
        if line.startswith("json: "):
            try:
                data = json.loads(line[len("json: "):])
            except ValueError:
                pass
    return data, "\n".join(l for l in out.splitlines() if not l.startswith("json: "))


def tail(text, n=15):
    lines = (text or "").strip().splitlines()
    return "\n".join(lines[-n:])


class Report:
    def __init__(self):
        self.parts = []
        self.info = {}

    def add(self, name, status, reason="", detail="", data=None, seconds=0.0):
        self.parts.append({"name": name, "status": status, "reason": reason, "detail": detail,
                           "data": data or {}, "seconds": round(seconds, 1)})
        print(f"gpu-check: {name}: {status}{': ' + reason if reason else ''} "
              f"({seconds:.1f} s)", flush=True)


# ------------------------------------------------------------------------------------ parts
def part_startup(rep, env, no_gpu):
    t0 = time.time()
    problems, lines = [], []
    bins = sorted(os.listdir(BIN)) if os.path.isdir(BIN) else []
    if not bins:
        rep.add("startup", "fail", "no binaries in bin/", seconds=time.time() - t0)
        return
    for b in bins:
        path = os.path.join(BIN, b)
        if shutil.which("ldd"):
            rc, out, err, _ = run(["ldd", path], env, 30)
            missing = [l.strip() for l in out.splitlines() if "not found" in l]
            if missing:
                problems.append(f"{b}: missing libraries: {'; '.join(missing)}")
        if b == "lcam":
            args = [path, "--version"]
        elif b == "gpu_bench":
            # With a GPU, the bench part runs it in full.
            if not no_gpu:
                continue
            args = [path, "5"]
        else:
            args = [path, "--list"]
        rc, out, err, _ = run(args, env, PART_TIMEOUT["startup"])
        first = (out.strip().splitlines() or [""])[0]
        lines.append(f"{b}: exit {rc}: {first}")
        if rc != 0:
            problems.append(f"{b}: `{' '.join(args[1:])}` exited {rc}: {tail(err, 5)}")
        elif b == "gpu_bench" and not out.startswith("skipped: no CUDA driver"):
            problems.append(f"gpu_bench without a driver printed {first!r}")
    rep.add("startup", "fail" if problems else "pass", "; ".join(problems),
            "\n".join(lines), seconds=time.time() - t0)


def part_test_binary(rep, name, binary, env, extra_env, skip_reason):
    if skip_reason:
        rep.add(name, "skipped", skip_reason)
        return
    e = dict(env, **extra_env)
    rc, out, err, secs = run([os.path.join(BIN, binary), "--test-threads=1"], e,
                             PART_TIMEOUT[name])
    passed = re.findall(r"^test (\S+) \.\.\. ok$", out, re.M)
    failed = re.findall(r"^test (\S+) \.\.\. FAILED$", out, re.M)
    skipped = re.findall(r"^SKIPPED (\S+): (.*)$", err, re.M)
    data = {"passed": passed, "failed": failed, "skipped": [f"{t}: {w}" for t, w in skipped]}
    summary = (re.findall(r"^test result: .*$", out, re.M) or [""])[-1]
    if rc == 0:
        rep.add(name, "pass", "", summary, data, secs)
    else:
        rep.add(name, "fail", f"exit {rc}: {', '.join(failed) or 'see detail'}",
                tail(out + "\n" + err, 40), data, secs)


def part_replay(rep, env, skip_reason):
    if skip_reason:
        rep.add("replay", "skipped", skip_reason)
        return
    t0 = time.time()
    rows, failures = [], []
    for sub in ("golden", "golden-groups", "random"):
        for trace in sorted(glob.glob(os.path.join(HERE, "fixtures", sub, "*.trace.json"))):
            if time.time() - t0 > PART_TIMEOUT["replay"]:
                failures.append("time budget spent before every trace ran")
                break
            name = f"{sub}/{os.path.basename(trace)[:-len('.trace.json')]}"
            expected = trace[:-len(".trace.json")] + ".expected.json"
            rc, out, err, secs = run([os.path.join(BIN, "lcam"), "replay", "--adapter", "cuda",
                                      "--trace", trace, "--expect", expected], env, 60)
            m = re.search(r"max relative error ([0-9.eE+-]+)", err)
            rel = float(m.group(1)) if m else None
            if rc == 0:
                rows.append({"trace": name, "status": "pass", "max_rel_err": rel})
            else:
                failures.append(name)
                rows.append({"trace": name, "status": "fail", "max_rel_err": rel,
                             "error": tail(err, 5)})
    worst = max((r["max_rel_err"] or 0.0 for r in rows if r["status"] == "pass"), default=None)
    detail = "\n".join(f"{r['trace']}: {r['status']}"
                       + (f" (max relative error {r['max_rel_err']:.3e})"
                          if r["max_rel_err"] is not None else "")
                       + (f" — {r['error']}" if r.get("error") else "") for r in rows)
    reason = f"{len(failures)} trace(s) differ or fail: {', '.join(failures)}" if failures else ""
    rep.add("replay", "fail" if failures or not rows else "pass", reason, detail,
            {"traces": rows, "worst_max_rel_err": worst}, time.time() - t0)


def part_bench(rep, env, skip_reason):
    if skip_reason:
        rep.add("bench", "skipped", skip_reason)
        return
    rc, out, err, secs = run([os.path.join(BIN, "gpu_bench"), "200"], env, PART_TIMEOUT["bench"])
    data, text = json_line(out)
    if data.get("arch"):
        rep.info["device (gpu_bench)"] = (f"{data.get('device')}, compute capability "
                                          f"{data.get('compute_capability')}, NVRTC target "
                                          f"{data['arch']}")
    if rc == 0 and data:
        rep.add("bench", "pass", "", text, data, secs)
    else:
        rep.add("bench", "fail", f"exit {rc}", tail(out + "\n" + err, 30), data, secs)


def part_torch(rep, env, skip_reason, py):
    if skip_reason:
        rep.add("torch", "skipped", skip_reason)
        return
    wheels = glob.glob(os.path.join(HERE, "wheel", "lcam-*.whl"))
    if not wheels:
        rep.add("torch", "skipped", "the bundle holds no wheel (built with --no-wheel)")
        return
    t0 = time.time()
    rc, out, err, _ = run([py, "-c", "import torch; assert torch.cuda.is_available(); "
                           "print(torch.__version__)"], env, 60)
    if rc != 0:
        rep.add("torch", "skipped", f"no torch with CUDA in {py}: {tail(err, 2)}",
                seconds=time.time() - t0)
        return
    target = tempfile.mkdtemp(prefix="lcam-wheel-")
    rc, out, err, _ = run([py, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-index", "--target", target, wheels[0]], env, 90)
    if rc != 0:
        rep.add("torch", "fail", f"pip could not install {os.path.basename(wheels[0])}",
                tail(err, 10), seconds=time.time() - t0)
        return
    e = dict(env, PYTHONPATH=os.pathsep.join([target, os.path.join(HERE, "torch")]))
    left = max(30, PART_TIMEOUT["torch"] - (time.time() - t0))
    rc, out, err, _ = run([py, os.path.join(HERE, "torch", "wrn_throughput.py")], e, left)
    data, text = json_line(out)
    if rc == 0 and data:
        rep.add("torch", "pass", "", text, data, time.time() - t0)
    else:
        rep.add("torch", "fail", f"exit {rc}", tail(out + "\n" + err, 30), data,
                time.time() - t0)


# ----------------------------------------------------------------------------------- report
def write_report(rep, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    doc = {"schema": "lcam-gpu-report/1", "info": rep.info, "parts": rep.parts}
    with open(os.path.join(out_dir, "gpu-report.json.tmp"), "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(os.path.join(out_dir, "gpu-report.json.tmp"),
               os.path.join(out_dir, "gpu-report.json"))
    md = ["# lcam GPU check", ""]
    for k, v in rep.info.items():
        md.append(f"- {k}: {v}")
    md += ["", "| part | status | reason | seconds |", "|---|---|---|---|"]
    for p in rep.parts:
        reason = p["reason"].replace("|", "\\|").replace("\n", " ")
        md.append(f"| {p['name']} | {p['status']} | {reason} | {p['seconds']} |")
    for p in rep.parts:
        if p["detail"]:
            md += ["", f"## {p['name']}", "", "```", p["detail"], "```"]
    with open(os.path.join(out_dir, "gpu-report.md.tmp"), "w") as f:
        f.write("\n".join(md) + "\n")
    os.replace(os.path.join(out_dir, "gpu-report.md.tmp"), os.path.join(out_dir, "gpu-report.md"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or HERE,
                    help="where gpu-report.md/.json go (default: $OUT, else the bundle)")
    args = ap.parse_args()
    t0 = time.time()
    rep = Report()
    env = dict(os.environ)
    nvrtc_dir = find_nvrtc_dir()
    if nvrtc_dir:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [nvrtc_dir] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
        os.environ["LD_LIBRARY_PATH"] = env["LD_LIBRARY_PATH"]
    env["LCAM_FIXTURES_DIR"] = os.path.join(HERE, "fixtures")
    env.pop("LCAM_SKIP_LOG", None)
    no_gpu, drv = driver_status()
    nv_version, nv_lib = nvrtc_version(nvrtc_dir)
    rep.info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "python": f"{sys.executable} {platform.python_version()}",
        "bundle": open(os.path.join(HERE, "BUNDLE.txt")).read().splitlines()[1]
        if os.path.exists(os.path.join(HERE, "BUNDLE.txt")) else "?",
        "nvrtc": f"{nv_version} ({nv_lib})" if nv_version else "not found",
        "driver": no_gpu or f"CUDA {drv.get('driver_cuda_version')}, "
                            f"{drv.get('devices')} device(s)",
    }
    if shutil.which("nvidia-smi"):
        rc, out, _, _ = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                             "--format=csv,noheader"], env, 30)
        if rc == 0:
            rep.info["nvidia-smi"] = out.strip()
    rc, out, _, _ = run([sys.executable, "-c", "import torch; print(torch.__version__, "
                         "torch.version.cuda)"], env, 60)
    rep.info["torch"] = out.strip() if rc == 0 else "not importable"
    rep.add("environment", "pass", "", "\n".join(f"{k}: {v}" for k, v in rep.info.items()))

    for name, fn in [
        ("startup", lambda: part_startup(rep, env, no_gpu is not None)),
        ("ptx", lambda: part_test_binary(
            rep, "ptx", "lcam-cuda-ptx-tests", env, {},
            None if nv_version else "no NVRTC (no nvidia/cu13/lib in this python's path)")),
        ("gpu-tests", lambda: part_test_binary(
            rep, "gpu-tests", "lcam-cuda-gpu-tests", env, {"LCAM_REQUIRE_GPU": "1"}, no_gpu)),
        ("replay", lambda: part_replay(rep, env, no_gpu)),
        ("bench", lambda: part_bench(rep, env, no_gpu)),
        ("torch", lambda: part_torch(rep, env, no_gpu, sys.executable)),
    ]:
        if time.time() > DEADLINE - 5:
            rep.add(name, "skipped", f"the check's {BUDGET_S} s budget was spent")
            continue
        try:
            fn()
        except Exception as e:  # one part's crash does not stop the others
            rep.add(name, "fail", f"the check itself failed: {type(e).__name__}: {e}")
    rep.info["seconds"] = round(time.time() - t0, 1)
    write_report(rep, args.out)
    failed = [p["name"] for p in rep.parts if p["status"] == "fail"]
    print(f"gpu-check: {len(rep.parts)} parts, {len(failed)} failed"
          f"{' (' + ', '.join(failed) + ')' if failed else ''}; report in "
          f"{os.path.join(args.out, 'gpu-report.md')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
