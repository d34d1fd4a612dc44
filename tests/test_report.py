"""`iswt report` end to end: discovery, a self-contained page, its PNGs, and how it looks in Chromium.

The artifacts are small but real: written with `artifacts.write_artifact`
and provenance that points at each other's content hashes, as the stages
write them, so the report can follow z and pairs back to their scores.
"""

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iswcli import artifacts, estimators, pairing
from tests.test_estimate_z import assert_one_line_error, write_samples, write_scores

K = 24  # samples per prompt: enough for a Pareto k-hat
PROMPTS = [f"p{i:02d}" for i in range(10)]
BETA = 2.0


# --------------------------------------------------------------------------
# Artifact builders
# --------------------------------------------------------------------------


def _ref(path, kind):
    return {"path": str(path), "kind": kind, "sha256": artifacts.file_sha256(str(path)), "files": 1}


def _complete(columns, spec):
    """The table with the spec's other columns added as nulls: the report reads only the ones given."""
    n = len(next(iter(columns.values())))
    for f in spec.schema:
        columns.setdefault(f.name, pa.nulls(n, f.type))
    return pa.table(columns)


def _keys():
    return [p for p in PROMPTS for _ in range(K)], [k for _ in PROMPTS for k in range(K)]


def write_scored(directory):
    """Samples and scores of 10 prompts x 24 samples; rewards differ in spread per prompt."""
    rng = np.random.default_rng(0)
    pids, idx = _keys()
    spread = np.repeat(np.linspace(0.2, 3.0, len(PROMPTS)), K)
    rewards = rng.normal(0.0, 1.0, len(pids)) * spread
    samples = write_samples(directory / "samples.parquet", pids, idx)
    scores = write_scores(directory / "scores.parquet", pids, idx, rewards)
    return samples, scores, rewards


def write_z(directory, samples, scores, rewards):
    group = np.repeat(np.arange(len(PROMPTS)), K)
    z = estimators.estimate_groups(group, BETA * rewards, rewards=rewards)
    table = pa.table(
        {
            "prompt_id": PROMPTS,
            "log_z": z.log_z,
            "beta": np.full(len(PROMPTS), BETA),
            "n_samples": z.n_samples.astype(np.int32),
            "ess": z.ess,
            "ess_frac": z.ess_frac,
            "max_weight_share": z.max_weight_share,
            "khat": z.khat,
            "khat_note": z.khat_note.tolist(),
            "log_z_se": z.log_z_se,
            "log_z_lo": z.log_z_lo,
            "log_z_hi": z.log_z_hi,
            "flags": pa.array([list(f) for f in z.flags], pa.list_(pa.string())),
            "log_z_is": z.log_z_is,
            "log_mean_ratio": z.log_mean_ratio,
            "ratio_ess_frac": z.ratio_ess_frac,
            "ratio_khat": z.ratio_khat,
        }
    )
    provenance = artifacts.make_provenance(
        "estimate-z",
        {"proposal": samples, "scores": scores, "beta": BETA, "reward_transform": "none", "low_ess": 0.1},
        inputs={"proposal": _ref(samples, "samples"), "scores": _ref(scores, "scores")},
        beta=BETA,
        log_ratio="zero",
    )
    artifacts.write_artifact(table, str(directory / "z.parquet"), artifacts.Z, provenance)
    assert any(z.flags), "the fixture should flag some prompts"
    return directory / "z.parquet"


def write_pairs(directory, samples, scores, rewards):
    pids, idx = _keys()
    pairs = pairing.weight_pairs(np.array(pids), np.array(idx), rewards, method="iso", gamma=1.0)
    table = pa.table(
        {
            "prompt_id": pairs.prompt_id.astype(str),
            "chosen_idx": pairs.chosen_idx.astype(np.int32),
            "rejected_idx": pairs.rejected_idx.astype(np.int32),
            "r_chosen": pairs.r_chosen,
            "r_rejected": pairs.r_rejected,
            "log_weight_base": pairs.log_weight_base,
            "margin_score": pairs.margin_score,
            "weight": pairs.weight,
            "method": ["iso"] * pairs.weight.size,
        }
    )
    provenance = artifacts.make_provenance(
        "weight-pairs",
        {"samples": samples, "scores": scores, "method": "iso", "gamma": 1.0, "seed": 0},
        inputs={"samples": _ref(samples, "samples"), "scores": _ref(scores, "scores")},
        pairing="all",
    )
    artifacts.write_artifact(table, str(directory / "pairs.parquet"), artifacts.PAIRS, provenance)
    return directory / "pairs.parquet"


def write_run(directory, z_path):
    """A finished tb run: its log (with loss parts) and manifest; no weights needed for the report."""
    directory.mkdir(parents=True)
    steps = np.arange(30)
    log = pa.table(
        {
            "step": steps,
            "loss": 4.0 * np.exp(-steps / 8) + 0.1,
            "lr": np.full(30, 1e-4),
            "grad_norm": np.linspace(2.0, 0.5, 30),
            "tokens_per_s": np.full(30, 900.0),
            "log_ratio_mean": np.linspace(0.0, -0.8, 30),
            "delta_mean": np.linspace(1.5, 0.1, 30),
            "delta_abs_max": np.linspace(3.0, 0.4, 30),
        }
    )
    provenance = artifacts.make_provenance(
        "train", {"loss": "tb", "beta": BETA, "lr": 1e-4, "z": str(z_path)}, inputs={"z": _ref(z_path, "z")}, seed=0
    )
    artifacts.write_artifact(log, str(directory / "train_log.parquet"), artifacts.TRAIN_LOG, provenance)
    manifest = {**provenance, "objective": "trajectory balance, frozen log Z", "z_sha256": _ref(z_path, "z")["sha256"]}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def write_eval(path, p_correct, seed, with_summary=False):
    """An eval artifact (columns the report does not read are left null) and, if asked, its OUT.summary.json."""
    rng = np.random.default_rng(seed)
    pids, idx = _keys()
    correct = rng.random(len(pids)) < p_correct
    columns = {
        "prompt_id": pids,
        "sample_idx": pa.array(idx, pa.int32()),
        "response": ["42"] * len(pids),
        "reward": correct.astype(float),
        "correct": correct,
    }
    provenance = artifacts.make_provenance("evaluate", {"adapter": path.stem, "k": K, "seed": seed}, seed=seed)
    sha = artifacts.write_artifact(_complete(columns, artifacts.EVAL), str(path), artifacts.EVAL, provenance)
    if with_summary:
        pooled = {f"Mean@{K}": float(correct.mean()), "pass@1": float(correct.mean()), "pass@8": 0.9}
        summary = {"eval": str(path), "sha256": sha, "prompts": len(PROMPTS), "pooled": pooled, "per_prompt": []}
        path.with_suffix(".summary.json").write_text(json.dumps(summary))
    return path


def write_diversity(path, level, seed):
    rng = np.random.default_rng(seed)
    n = len(PROMPTS)
    strategies = rng.integers(1, 4, n).astype(float) + level
    strategies[0] = np.nan  # an unparsable judge answer
    table = _complete(
        {
            "prompt_id": PROMPTS,
            "n_strategies": strategies,
            "judge_raw": ["groups: ..."] * n,
            "distinct_1": rng.random(n),
            "distinct_2": 0.3 + 0.1 * level + 0.05 * rng.random(n),
            "self_bleu": 0.6 - 0.1 * level + 0.05 * rng.random(n),
            "embed_dispersion": 0.2 + 0.05 * level + 0.02 * rng.random(n),
        },
        artifacts.DIVERSITY,
    )
    artifacts.write_artifact(table, str(path), artifacts.DIVERSITY, artifacts.make_provenance("judge-diversity", {}))
    return path


@pytest.fixture
def pipeline(tmp_path):
    """A pipeline output directory with every kind of artifact, a run, and a file that is none of them."""
    d = tmp_path / "pipe"
    d.mkdir()
    samples, scores, rewards = write_scored(d)
    z = write_z(d, samples, scores, rewards)
    write_pairs(d, samples, scores, rewards)
    write_run(d / "run-tb", z)
    write_eval(d / "eval_base.parquet", 0.35, seed=1, with_summary=True)
    write_eval(d / "eval_tb.parquet", 0.6, seed=2)
    write_diversity(d / "diversity_base.parquet", 0.0, seed=3)
    write_diversity(d / "diversity_tb.parquet", 1.0, seed=4)
    (d / "notes.txt").write_text("not an artifact")
    return d


# --------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------


class _Resources(HTMLParser):
    """Every tag's src/href, and the src of every <img>."""

    def __init__(self):
        super().__init__()
        self.links, self.images = [], []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href"):
                self.links.append((tag, value or ""))
                if tag == "img":
                    self.images.append(value or "")


def _check_self_contained(html_text):
    parser = _Resources()
    parser.feed(html_text)
    for tag, value in parser.links:
        assert not re.match(r"^\s*(https?:)?//", value), f"<{tag}> loads an external resource: {value[:80]}"
        assert tag == "a" and value.startswith("#") or tag == "img", f"unexpected <{tag}> reference {value[:80]}"
    assert "<link" not in html_text and "<script" not in html_text and "url(" not in html_text
    for src in parser.images:
        assert src.startswith("data:image/png;base64,"), src[:60]
    return parser.images


def _run_report(cli, *inputs, out):
    result = cli("--json", "report", *inputs, "--out", out, "--bootstrap", 300)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_report_of_a_pipeline_directory(cli, pipeline, tmp_path):
    out = tmp_path / "report.html"
    summary = _run_report(cli, pipeline, out=out)
    page = out.read_text()
    images = _check_self_contained(page)

    pngs = sorted((tmp_path / "report_figures").glob("*.png"))
    # rewards, importance weights, pair weights, training, evaluation, diversity
    assert len(pngs) == len(images) == 6, [p.name for p in pngs]
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    for title in (
        "Rewards",
        "Importance weights and log Z",
        "Pair weights",
        "Training curves",
        "Evaluation",
        "Diversity",
    ):
        assert f"<h2>{title}</h2>" in page
    # the page leads with the answer: evaluations compared with intervals, diversity, the health of log Z
    assert page.index("<h2>At a glance</h2>") < page.index("<h2>Rewards</h2>")
    glance = page[page.index("<h2>At a glance</h2>") : page.index("<h2>Rewards</h2>")]
    assert "<th>Mean@k minus " in glance and "<caption>diversity</caption>" in glance
    assert "<caption>health of the frozen log Z</caption>" in glance and "low_ess" in glance
    assert summary["artifacts"] == {"samples": 1, "scores": 1, "z": 1, "pairs": 1, "eval": 2, "diversity": 2}
    assert summary["train_runs"] == 1

    # provenance: the hashes of the inputs each section used, and flagged prompts with their flags
    scores_sha = artifacts.file_sha256(str(pipeline / "scores.parquet"))[:12]
    z_sha = artifacts.file_sha256(str(pipeline / "z.parquet"))[:12]
    assert f"scores {pipeline / 'scores.parquet'} ({scores_sha})" in page
    assert f"anchored to z {z_sha}" in page
    assert "flagged prompts in z" in page and "low_ess" in page
    assert "iso γ=0.5" in page and "iso γ=4" in page
    # the pairs were made with iso at gamma 1: recomputing at gamma 1 from their scores gives the same weights
    stored = re.search(r"<tr><td>stored \(iso\)</td>(.*?)</tr>", page).group(1)
    assert re.search(r"<tr><td>iso γ=1</td>(.*?)</tr>", page).group(1) == stored
    assert "log-weights not recomputed" not in page and "only the stored weights" not in page
    assert "<th>pass@8</th>" in page and "<td>0.9</td>" in page  # pooled metrics from eval_base.summary.json
    assert (
        "notes.txt" in page and "eval_base.summary.json" not in page
    )  # skipped, and said so; a summary is no artifact


def test_explicit_inputs_shards_and_missing_upstream(cli, pipeline, tmp_path):
    """Files, a shard directory and a run directory given one by one; pairs whose scores are gone."""
    shards = tmp_path / "scores-shards"
    shards.mkdir()
    scores = artifacts.read_artifact(str(pipeline / "scores.parquet"), artifacts.SCORES).table
    half = scores.num_rows // 2
    for i, part in enumerate((scores.slice(0, half), scores.slice(half))):
        prov = artifacts.make_provenance("score", {"reward": "math", "shard": f"{i}/2"})
        artifacts.write_artifact(part, str(shards / f"part-{i}.parquet"), artifacts.SCORES, prov)
    moved = tmp_path / "pairs.parquet"
    shutil.copy(pipeline / "pairs.parquet", moved)
    (pipeline / "scores.parquet").unlink()

    out = tmp_path / "sub" / "explicit.html"
    stale = tmp_path / "sub" / "explicit_figures" / "09-from-an-earlier-report.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    summary = _run_report(cli, shards, moved, pipeline / "run-tb", pipeline / "eval_tb.parquet", out=out)
    page = out.read_text()
    _check_self_contained(page)
    assert summary["artifacts"] == {"scores": 1, "pairs": 1, "eval": 1}  # two shards read as one artifact
    assert "only the stored weights are shown" in page
    assert len(list((tmp_path / "sub" / "explicit_figures").glob("*.png"))) == 4 and not stale.exists()


def test_nothing_recognizable_is_one_line_and_no_file(cli, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "readme.txt").write_text("hello")
    pq.write_table(pa.table({"a": [1, 2]}), junk / "plain.parquet")  # Parquet, but no iswt kind
    out = tmp_path / "r.html"
    result = cli("report", junk, "--out", out)
    assert_one_line_error(result, "nothing to report")
    assert not out.exists() and not (tmp_path / "r_figures").exists()

    assert_one_line_error(cli("report", tmp_path / "nope", "--out", out), "no such file or directory")
    assert_one_line_error(cli("report", junk, "--out", tmp_path / "r.pdf"), "--out", ".html")
    assert not out.exists()


# --------------------------------------------------------------------------
# As a person sees it: headless Chromium
# --------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of the page: records where each image landed and whether it decoded.
_MEASURE = """<script>
window.addEventListener('load', () => {
  const rects = [...document.images].map(i => {
    const r = i.getBoundingClientRect();
    return [r.left + scrollX, r.top + scrollY, r.width, r.height, i.naturalWidth];
  });
  const pre = document.createElement('pre');
  pre.id = 'measured';
  pre.textContent = JSON.stringify({rects, height: document.documentElement.scrollHeight});
  document.body.appendChild(pre);
});
</script>"""


def _chromium(tmp_path, *args):
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _screenshot(tmp_path, page, name, height):
    from matplotlib.image import imread

    png = tmp_path / f"{name}.png"
    _chromium(tmp_path, f"--screenshot={png}", f"--window-size=1200,{height}", page.as_uri())
    return imread(png)[..., :3]  # floats in [0, 1]; drop alpha


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (install the Debian package 'chromium')")
def test_figures_render_in_chromium(cli, pipeline, tmp_path):
    out = tmp_path / "report.html"
    _run_report(cli, pipeline, out=out)
    page = out.read_text()

    # Where the images are, from the browser itself.
    measured_page = tmp_path / "measured.html"
    measured_page.write_text(page.replace("</body>", _MEASURE + "</body>"))
    dom = _chromium(tmp_path, "--window-size=1200,4000", "--dump-dom", measured_page.as_uri())
    measured = json.loads(html.unescape(re.search(r'<pre id="measured">(.*?)</pre>', dom, re.DOTALL).group(1)))
    rects = measured["rects"]
    assert len(rects) == 6

    # The same page twice: as is, and with the images hidden (same layout, blank where they were).
    height = max(4000, int(measured["height"]) + 10)
    shown = _screenshot(tmp_path, out, "shown", height)
    hidden_page = tmp_path / "hidden.html"
    hidden_page.write_text(page.replace("</style>", "img { visibility: hidden; }</style>"))
    hidden = _screenshot(tmp_path, hidden_page, "hidden", height)
    assert shown.shape == hidden.shape

    for left, top, width, h, natural_width in rects:
        assert natural_width > 0, "an image did not decode"
        assert width > 500 and h > 150, (width, h)  # shown at a readable size
        x0, y0 = int(left) + 2, int(top) + 2
        region = shown[y0 : int(top + h) - 2, x0 : int(left + width) - 2]
        blank = hidden[y0 : int(top + h) - 2, x0 : int(left + width) - 2]
        ink = (region < 0.9).any(axis=-1).mean()  # axes, bars, text
        colour = (region.max(axis=-1) - region.min(axis=-1) > 0.25).mean()  # the coloured marks of the plot
        assert ink > 0.03 and colour > 0.005, (ink, colour)
        assert (blank < 0.9).any(axis=-1).mean() < 0.001, "the region should be empty without the image"
    # Outside the images the two renders agree: the text of the page is the same either way.
    outside = np.ones(shown.shape[:2], dtype=bool)
    for left, top, width, h, _ in rects:
        outside[int(top) : int(top + h) + 1, int(left) : int(left + width) + 1] = False
    assert np.abs(shown - hidden).max(axis=-1)[outside].mean() < 0.001
