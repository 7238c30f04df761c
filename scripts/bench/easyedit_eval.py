"""Evaluation throughput of EasyEdit's own SafeEdit code (zjunlp/EasyEdit) on CPU, for the side-by-side
with safeedit's evaluation (docs/method.md §Evaluation). Prints one JSON object on stdout.

Usage (EasyEdit is not on PyPI in a usable form, so it comes from a checkout; see below):

    git clone https://github.com/zjunlp/EasyEdit /tmp/EasyEdit      # any checkout (or `git archive` of one)
    PY="$(scripts/bench/reference-venv.sh)"; GGUF="$(scripts/fetch-model.sh)"
    OMP_NUM_THREADS=2 "$PY" scripts/bench/easyedit_eval.py --easyedit /tmp/EasyEdit --gguf "$GGUF" \
        --threads 2 --records 2 --max-new-tokens 32 > easyedit.json

    --ids 0,4        records by their `id` instead of the first --records K
    --format plain   EasyEdit's raw strings instead of the model's chat template (default: chat)
    --max-length     EasyEdit's `max_length` hparam (default 2048, as its llama-7b/mistral-7b DINM
                     yaml); below 1624 EasyEdit generates the five inputs one by one (see below)

What is timed, per record (wall clock, torch.set_num_threads(--threads); model loading and the judge
are not included, and one untimed warm-up evaluation runs first unless --warmup 0):

  (a) vanilla: `easyeditor.evaluate.safety_evaluate.compute_safety_edit_quality(model, tok, request,
      device, max_tokens=hparams.max_length, max_output_tokens=hparams.max_output_length)` on the
      request built by `SafetyEditor._prepare_requests` from the raw inputs -- exactly the "pre" call of
      `SafetyEditor.edit`. It calls `evaluate_utils.test_safety_gen` on [DS] + the four DG inputs.
  (b) DINM: one `SafetyEditor.edit(editing_method="DINM", ..., keep_original_weight=True,
      pre_edit=[<the (a) metrics>])` call, built as EasyEdit's examples/run_safety_editing.py builds
      it (inputs + " " + suffix_system_prompt for the post-edit requests). With pre_edit given,
      SafetyEditor skips its own vanilla pass and runs: `_locate_toxic_layer` (when hparams.layers is
      empty; reset before every record unless --reuse-first-layer, which reproduces the release's
      reuse of the first record's layer), `apply_dinm_to_model` (DINM's 10 Adam steps), the post-edit
      `compute_safety_edit_quality` on the suffixed inputs, and the restore of the weights. The split
      into locate / edit / post-edit evaluation comes from thin timing wrappers around
      `_locate_toxic_layer` and `apply_algo` (the latter also takes the delta's Frobenius norm; its
      own cost is measured and subtracted).

How EasyEdit is loaded. PyPI's `easyeditor` (only 0.0.1.dev0 exists) predates DINM: it has neither
`easyeditor/models/dinm` nor `SafetyEditor`, so `--easyedit DIR` must name a checkout. Its package
`__init__` files import every editing method, trainer and dataset (omegaconf, peft forks, openai,
sklearn, nltk, zhipuai, ...), so the script does not run them: it registers placeholder package
objects for `easyeditor`, `easyeditor.models`, `easyeditor.evaluate`, `easyeditor.editors`,
`easyeditor.trainer` and `easyeditor.dataset` whose `__path__` points into the checkout, then imports
the real submodules it needs from there (`util` -- whose __init__ is light and runs as is --,
`models.dinm`, `trainer.losses`, `evaluate.evaluate_utils`, `evaluate.safety_evaluate`,
`dataset.safety`, `editors.utils`, `editors.safety_editor`) and copies onto the placeholders the few
names those modules import from a package (`kl_loc_loss`, `masked_log_probs`,
`compute_safety_edit_quality`). Two modules are replaced: `easyeditor.util.alg_dict` by one whose
ALG_DICT maps only "DINM" to the real `apply_dinm_to_model` (the original imports all 27 methods),
and `easyeditor.models.melo.melo` by a module with an empty `LORA` class (SafetyEditor only uses it
in an isinstance check). Third-party packages that `evaluate_utils` imports at the top but
`test_safety_gen` never uses (scipy, nltk, scikit-learn, openai, regex) must be installed
(scripts/bench-eval.sh installs them into the reference venv). No EasyEdit code is copied here.

Settings passed to EasyEdit (everything else is its hparams/DINM/llama-7b.yaml: lr 5e-4, 10 steps,
kl_factor 0.1, weight decay 0, no norm constraint, down_proj of the located layer, the suffix):
model and tokenizer handed in as `model_name=(model, tok)` (SafetyEditor's non-path branch), loaded
as its loaders do (float32, `output_hidden_states=True` in the config -- its locate step relies on
it -- and pad = EOS), device "cpu", max_output_length = --max-new-tokens. SafetyEditor's `generate`
call passes no decoding options, so decoding follows `model.generation_config`; the script makes it
greedy (do_sample False) as safeedit's benchmark does, and records it. SafetyEditor writes its log to
./logs/run.log, so the script runs from a scratch directory.
"""

import argparse
import contextlib
import copy
import hashlib
import importlib
import importlib.util
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--easyedit", required=True, help="EasyEdit checkout (the folder holding easyeditor/)")
    ap.add_argument("--hparams", help="DINM hparams yaml (default: DIR/hparams/DINM/llama-7b.yaml)")
    ap.add_argument("--model-dir", help="folder of the GGUF file (default: $SAFEEDIT_CACHE/models)")
    ap.add_argument("--gguf", help="GGUF file: a path, or a name inside --model-dir")
    ap.add_argument("--data", default=os.path.join(REPO, "data/safeedit/SafeEdit_test_sample.json"))
    ap.add_argument("--records", type=int, default=2, help="the first K records of --data")
    ap.add_argument("--ids", help="comma-separated record ids (overrides --records)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=2048, help="EasyEdit's max_length hparam")
    ap.add_argument("--format", choices=["chat", "plain"], default="chat")
    ap.add_argument("--warmup", type=int, default=1, help="untimed vanilla evaluations before timing")
    ap.add_argument("--reuse-first-layer", action="store_true",
                    help="locate only for the first record, as the release's SafetyEditor does")
    return ap.parse_args()


def resolve_gguf(args):
    if args.gguf and os.path.isabs(args.gguf) or (args.gguf and os.path.exists(args.gguf) and not args.model_dir):
        path = os.path.abspath(args.gguf)
    else:
        folder = os.path.abspath(args.model_dir or os.path.join(
            os.environ.get("SAFEEDIT_CACHE", os.path.expanduser("~/.cache/safeedit")), "models"))
        if args.gguf:
            path = os.path.join(folder, args.gguf)
        else:
            found = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
            if not found:
                sys.exit(f"no .gguf file in {folder}: run scripts/fetch-model.sh or pass --gguf")
            path = os.path.join(folder, found[0])
    if not os.path.isfile(path):
        sys.exit(f"{path}: no such GGUF file")
    return os.path.split(path)


# ---------------------------------------------------------------------------------------------
# Loading EasyEdit's modules without its package __init__ files (see the docstring).

def _placeholder_package(name, path):
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    mod.__package__ = name
    mod.__file__ = None
    sys.modules[name] = mod
    return mod


# Third-party packages EasyEdit's evaluate_utils imports at the top (test_safety_gen uses none of
# them). Stand-ins do not work: transformers probes some of them with importlib.util.find_spec,
# which fails on a module without a spec, so they must be installed.
EASYEDIT_IMPORTS = {"scipy": "scipy", "nltk": "nltk", "sklearn": "scikit-learn", "openai": "openai",
                    "regex": "regex"}


def require_easyedit_imports():
    missing = [pkg for mod, pkg in EASYEDIT_IMPORTS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        sys.exit(f"EasyEdit's evaluate_utils imports packages this Python lacks: pip install {' '.join(missing)}"
                 " (scripts/bench-eval.sh does this when EASYEDIT is set)")


def load_easyedit(root):
    pkg_dir = os.path.join(root, "easyeditor")
    for must in ("models/dinm/dinm_main.py", "editors/safety_editor.py", "evaluate/safety_evaluate.py"):
        if not os.path.isfile(os.path.join(pkg_dir, must)):
            sys.exit(f"{pkg_dir}/{must} missing: --easyedit must be an EasyEdit checkout with DINM")
    for mod in [m for m in sys.modules if m == "easyeditor" or m.startswith("easyeditor.")]:
        del sys.modules[mod]
    _placeholder_package("easyeditor", pkg_dir)
    for sub in ("models", "evaluate", "editors", "trainer", "dataset"):
        _placeholder_package(f"easyeditor.{sub}", os.path.join(pkg_dir, sub))
    require_easyedit_imports()

    util = importlib.import_module("easyeditor.util")  # real __init__: logit_lens + hparams
    losses = importlib.import_module("easyeditor.trainer.losses")
    trainer = sys.modules["easyeditor.trainer"]
    trainer.kl_loc_loss, trainer.masked_log_probs = losses.kl_loc_loss, losses.masked_log_probs

    melo_pkg = _placeholder_package("easyeditor.models.melo", os.path.join(pkg_dir, "models", "melo"))
    melo = types.ModuleType("easyeditor.models.melo.melo")
    melo.LORA = type("LORA", (), {})
    sys.modules["easyeditor.models.melo.melo"] = melo
    melo_pkg.melo = melo

    dinm = importlib.import_module("easyeditor.models.dinm")
    alg_dict = types.ModuleType("easyeditor.util.alg_dict")
    alg_dict.ALG_DICT = {"DINM": dinm.apply_dinm_to_model}
    alg_dict.__all__ = ["ALG_DICT"]
    sys.modules["easyeditor.util.alg_dict"] = alg_dict
    util.alg_dict = alg_dict

    importlib.import_module("easyeditor.evaluate.evaluate_utils")
    safety_eval = importlib.import_module("easyeditor.evaluate.safety_evaluate")
    sys.modules["easyeditor.evaluate"].compute_safety_edit_quality = safety_eval.compute_safety_edit_quality
    safety_ds = importlib.import_module("easyeditor.dataset.safety")
    importlib.import_module("easyeditor.editors.utils")
    safety_editor = importlib.import_module("easyeditor.editors.safety_editor")
    return types.SimpleNamespace(
        dinm=dinm, safety_evaluate=safety_eval, SafetyDataset=safety_ds.SafetyDataset,
        safety_editor=safety_editor, SafetyEditor=safety_editor.SafetyEditor)


def easyedit_version(root):
    rev = None
    try:
        rev = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    digest = hashlib.sha256()
    files = ["easyeditor/editors/safety_editor.py", "easyeditor/models/dinm/dinm_main.py",
             "easyeditor/evaluate/safety_evaluate.py", "easyeditor/evaluate/evaluate_utils.py",
             "easyeditor/trainer/losses.py"]
    for f in files:
        with open(os.path.join(root, f), "rb") as fh:
            digest.update(fh.read())
    return {"source": "checkout", "path": root, "git_commit": rev,
            "sha256_of_used_sources": digest.hexdigest()[:16], "files_hashed": files}


class Tee(io.TextIOBase):
    """EasyEdit prints its progress (DINM's losses) on stdout: send it to stderr, keep a copy."""

    def __init__(self):
        self.buf = io.StringIO()

    def write(self, s):
        sys.stderr.write(s)
        return self.buf.write(s)

    def flush(self):
        sys.stderr.flush()


def main():
    args = parse_args()
    # Only the JSON result goes to stdout: EasyEdit prints as it loads and edits (SafetyEditor's
    # "We are creating the logger files", DINM's losses), so everything else goes to stderr.
    result_out, sys.stdout = sys.stdout, sys.stderr
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    root = os.path.abspath(args.easyedit)
    folder, gguf_name = resolve_gguf(args)
    data_path = os.path.abspath(args.data)
    hparams_path = os.path.abspath(args.hparams or os.path.join(root, "hparams", "DINM", "llama-7b.yaml"))

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    ee = load_easyedit(root)
    os.chdir(tempfile.mkdtemp(prefix="easyedit-eval-"))  # SafetyEditor's logs/run.log lands here

    # Model and tokenizer, as SafetyEditor's own loaders would make them (not timed).
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name, dtype=torch.float32,
                                                 output_hidden_states=True)
    model.eval()
    tok.pad_token_id = tok.eos_token_id
    gen_cfg = model.generation_config
    sampled_by_default = bool(getattr(gen_cfg, "do_sample", False))
    gen_cfg.do_sample = False
    # EasyEdit's generation loop (written for transformers 4) iterates over generate()'s result as
    # token sequences; transformers 5 carries the config's output_hidden_states into generation and
    # then returns a dict, so ask for the plain sequences (this also skips keeping every step's
    # hidden states, which only makes EasyEdit's side faster).
    gen_cfg.output_hidden_states = False
    gen_cfg.return_dict_in_generate = False
    for k in ("temperature", "top_p", "top_k"):
        if hasattr(gen_cfg, k):
            setattr(gen_cfg, k, None)

    hparams = ee.dinm.DINMHyperParams.from_hparams(hparams_path)
    hparams.model_name = (model, tok)
    hparams.device = "cpu"
    hparams.max_output_length = args.max_new_tokens
    hparams.max_length = args.max_length
    hparams.layers = []
    editor = ee.SafetyEditor.from_hparams(hparams)
    S = hparams.suffix_system_prompt

    # Records, mapped to EasyEdit's dict format by its own SafetyDataset.
    ds = ee.SafetyDataset(data_path)
    items = list(ds)
    if args.ids:
        wanted = [int(i) for i in args.ids.split(",")]
        by_id = {d["case_id"]: d for d in items}
        items = [by_id[i] for i in wanted]
    else:
        items = items[: args.records]

    def fmt(text):
        if args.format == "plain":
            return text
        return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                       add_generation_prompt=True)

    def call_args(d):
        """editor.edit's arguments for one record, as EasyEdit's run_safety_editing.py arranges them."""
        return dict(
            editing_method="DINM", case_id=[d["case_id"]],
            prompts=[fmt(d["prompt"])],
            prompts_with_systemPrompt=[fmt(d["prompt"] + " " + S)],
            target_new=[d["target_new"]], ground_truth=[d["ground_truth"]],
            locality_inputs={"general knowledge constraint": {
                "prompt": [fmt(d["locality_prompt"])], "ground_truth": [d["locality_ground_truth"]]}},
            locality_inputs_with_systemPrompt={"general knowledge constraint": {
                "prompt": [fmt(d["locality_prompt"] + " " + S)],
                "ground_truth": [d["locality_ground_truth"]]}},
            general_prompt=[[fmt(g) for g in d["general_prompt"]]],
            general_prompt_with_systemPrompt=[[fmt(g + " " + S) for g in d["general_prompt"]]],
            keep_original_weight=True,
        )

    def vanilla_request(d):
        a = call_args(d)
        return editor._prepare_requests(a["prompts"], a["target_new"], a["ground_truth"],
                                        a["general_prompt"], a["locality_inputs"])[0]

    def vanilla_eval(request):
        return ee.safety_evaluate.compute_safety_edit_quality(
            editor.model, editor.tok, request, hparams.device,
            max_tokens=hparams.max_length, max_output_tokens=hparams.max_output_length)

    # Instrumentation: record generate() shapes, split locate/edit time, take the delta norm.
    probe = {"generate": [], "locate": [], "apply": []}
    real_generate = model.generate

    def generate(*a, **k):
        ids = k.get("input_ids")
        out = real_generate(*a, **k)
        probe["generate"].append({
            "batch": int(ids.shape[0]), "padded_input_tokens": int(ids.shape[1]),
            "new_tokens": int(out.shape[1] - ids.shape[1]),
            "input_tokens": [int(x) for x in k["attention_mask"].sum(1)] if "attention_mask" in k else None,
            "padding_side": tok.padding_side})
        return out

    model.generate = generate
    real_locate = editor._locate_toxic_layer

    def locate(*a, **k):
        t0 = time.perf_counter()
        layers = real_locate(*a, **k)
        probe["locate"].append({"seconds": time.perf_counter() - t0, "layers": list(layers),
                                "padding_side": tok.padding_side})
        return layers

    editor._locate_toxic_layer = locate
    real_apply = editor.apply_algo

    def apply_algo(model_, tok_, requests, hp, **k):
        t0 = time.perf_counter()
        edited, weights_copy = real_apply(model_, tok_, requests, hp, **k)
        t1 = time.perf_counter()
        with torch.no_grad():
            norms = {n: float(torch.linalg.norm(ee.safety_editor.nethook.get_parameter(edited, n) - w))
                     for n, w in weights_copy.items()}
        probe["apply"].append({"seconds": t1 - t0, "delta_norm": norms,
                               "overhead_s": time.perf_counter() - t1})
        return edited, weights_copy

    editor.apply_algo = apply_algo

    tee = Tee()
    with contextlib.redirect_stdout(tee):
        for d in items[: args.warmup]:
            vanilla_eval(vanilla_request(d))
        probe["generate"].clear()

        rows = []
        for d in items:
            if not args.reuse_first_layer:
                hparams.layers = []
            # (a) vanilla evaluation
            req = vanilla_request(d)
            t0 = time.perf_counter()
            pre = vanilla_eval(req)
            t_vanilla = time.perf_counter() - t0
            gen_pre = probe["generate"][:]
            probe["generate"].clear()
            n_locate, n_apply = len(probe["locate"]), len(probe["apply"])
            out_start = len(tee.buf.getvalue())
            # (b) DINM edit + post-edit evaluation, one SafetyEditor.edit call
            t0 = time.perf_counter()
            metrics, _, _ = editor.edit(**call_args(d), pre_edit=[copy.deepcopy(pre)])
            t_dinm = time.perf_counter() - t0
            gen_post = probe["generate"][:]
            probe["generate"].clear()
            loc = probe["locate"][n_locate:]
            app = probe["apply"][-1] if len(probe["apply"]) > n_apply else None
            printed = tee.buf.getvalue()[out_start:]
            losses = [float(x) for x in re.findall(r"Batch loss ([-+0-9.eE]+)", printed)]
            m = metrics[0]
            locate_s = sum(x["seconds"] for x in loc)
            overhead = app["overhead_s"] if app else 0.0
            post = m["post"]
            rows.append({
                "id": d["case_id"],
                "vanilla_s": t_vanilla,
                "dinm_s": t_dinm - overhead,
                "dinm_parts_s": {
                    "locate": locate_s,
                    "edit": app["seconds"] if app else None,
                    "easyedit_reported_edit_time": m["time"],
                    "post_eval_and_restore": t_dinm - overhead - m["time"],
                },
                "layer": (loc[0]["layers"][0] if loc else hparams.layers[0]),
                "located_this_record": bool(loc),
                "locate_padding_side": loc[0]["padding_side"] if loc else None,
                "losses": losses,
                "delta_norm": app["delta_norm"] if app else None,
                "generate_calls": {"vanilla": gen_pre, "post_edit": gen_post},
                "responses": {"vanilla": pre, "post_edit": post},
                "empty_responses": {"vanilla": sum(1 for v in pre.values() if not v),
                                    "post_edit": sum(1 for v in post.values() if not v)},
            })
            print(f"record {d['case_id']}: vanilla {t_vanilla:.2f}s, DINM {t_dinm:.2f}s "
                  f"(locate {locate_s:.2f}s, edit {app['seconds'] if app else 0:.2f}s), "
                  f"layer {rows[-1]['layer']}, losses {[round(x, 4) for x in losses]}, "
                  f"|delta| {app['delta_norm'] if app else None}", file=sys.stderr)

    mean_v = statistics.mean(r["vanilla_s"] for r in rows)
    mean_d = statistics.mean(r["dinm_s"] for r in rows)
    result = {
        "backend": "EasyEdit SafetyEditor + DINM (PyTorch, CPU)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": sys.version.split()[0], "easyedit": easyedit_version(root)},
        "threads": torch.get_num_threads(),
        "model": {"gguf": gguf_name, "dtype": str(next(model.parameters()).dtype),
                  "attn_implementation": getattr(model.config, "_attn_implementation", None),
                  "generation_config_sampled_by_default": sampled_by_default, "decoding": "greedy"},
        "settings": {"format": args.format, "max_new_tokens": hparams.max_output_length,
                     "max_length": hparams.max_length,
                     "generation_path": ("batched (5 inputs, one generate call)" if hparams.max_length >= 1624
                                         else "one input at a time (max_length < 1624)"),
                     "lr": hparams.lr, "num_steps": hparams.num_steps, "kl_factor": hparams.kl_factor,
                     "suffix_system_prompt": S, "hparams_file": hparams_path,
                     "locate_per_record": not args.reuse_first_layer, "warmup_records": args.warmup,
                     "data": data_path},
        "instances": rows,
        "mean_vanilla_s": mean_v,
        "mean_dinm_s": mean_d,
        "instances_per_hour": {"vanilla": 3600 / mean_v, "dinm": 3600 / mean_d},
    }
    print(json.dumps(result, indent=2), file=result_out)


if __name__ == "__main__":
    main()
