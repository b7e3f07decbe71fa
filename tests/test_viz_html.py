"""pydeberta.viz.attention_view: the interactive HTML view. Without a browser: the page is
self-contained, its embedded numbers are the model's, text is escaped, the size is guarded, the
file is written all or nothing, and ``pydeberta attention --html`` writes it. In a real headless
Chromium (Debian's, installed by the session fixture when missing): the page renders, and clicks
and selectors change what is drawn.

The bundled model may be retrained: every expected number comes from the model's own outputs."""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

import pydeberta
from pydeberta import viz
from pydeberta.hub import resolve_model_folder

TEXT = "And God said, Let there be light: and there was light."
HOSTILE_TEXT = 'x </script><img src=x onerror="window.__pwned=1"> & \u2028 "quoted" <!-- y'
HOSTILE_TOKENS = ["</script>", '"<img src=x onerror=window.__pwned=1>"', "</SCRIPT ", "<!--", "a & b", "\u2028", "'"]
TINY = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            relative_attention=True, position_buckets=8, max_relative_positions=32, pos_att_type="p2c|c2p",
            share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False)


# --------------------------------------------------------------------------- models and pages
@pytest.fixture(scope="module")
def bundled():
    """The bundled masked LM, its tokenizer, the view of TEXT and the model's own output for it;
    ``L``, ``H`` and ``maps`` from its config (it may be retrained; it is a v3-style model, with
    c2p and p2c)."""
    tokenizer = pydeberta.DebertaV2TokenizerFast.from_pretrained(resolve_model_folder("pydeberta/tiny"))
    model = pydeberta.DebertaV2ForMaskedLM.from_pretrained("pydeberta/tiny")
    enc = tokenizer(TEXT, return_tensors="np")
    output = model(**enc, output_attentions=True, output_study=True)
    assert model.config.pos_att == {"c2p", "p2c"}
    return types.SimpleNamespace(model=model, tokenizer=tokenizer, output=output,
                                 view=viz.attention_view(model, tokenizer, TEXT), L=model.config.num_hidden_layers,
                                 H=model.config.num_attention_heads, maps=["attention", "c2c", "c2p", "p2c"])


def random_output(n_tokens, **fields):
    """A seeded random model's output for ``n_tokens`` ids (attentions and study)."""
    model = pydeberta.DebertaV2Model(pydeberta.DebertaV2Config(**dict(TINY, **fields)), seed=0)
    ids = np.arange(n_tokens)[None] % TINY["vocab_size"]
    return model(input_ids=ids, output_attentions=True, output_study=True)


def embedded(page):
    """The spec a page's script reads, with its numbers decoded to ``[L, H, maps, N, N]``."""
    match = re.search(r'<script type="application/json" class="pdv-data">(.*?)</script>', page, re.S)
    spec = json.loads(match.group(1))
    raw = base64.b64decode(spec["data"])
    spec["array"] = np.frombuffer(raw, {"float16": "<f2", "float32": "<f4"}[spec["dtype"]]).reshape(spec["shape"])
    return spec


def model_maps(output, layer, head):
    """The model's ``{map: [N, N]}`` for one layer and head (row 0)."""
    maps = {"attention": output.attentions[layer][0, head]}
    maps.update({name: getattr(output.study, name)[layer][0, head] for name in viz.TERMS
                 if getattr(output.study, name)[layer] is not None})
    return maps


# --------------------------------------------------------------------------- without a browser
def test_a_text_pair_is_one_view_of_both_texts(bundled):
    view = viz.attention_view(bundled.model, bundled.tokenizer, "A man eats.", "Someone eats.",
                              layers=[bundled.L - 1])
    enc = bundled.tokenizer("A man eats.", "Someone eats.", return_tensors="np")
    output = bundled.model(**enc, output_attentions=True, output_study=True)
    assert view.text == "A man eats. | Someone eats." and view.tokens.count("[SEP]") == 2
    assert view.tokens == bundled.tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    np.testing.assert_array_equal(view.data[0, :, 2], output.study.c2p[-1][0].astype(np.float16))


def test_page_is_self_contained(bundled):
    page = bundled.view.html
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?://", page), "the page names a network address"
    assert not re.search(r"<link\b|@import|url\(|<iframe\b|<img\b", page, re.I)
    assert not re.search(r"\b(src|href)\s*=", page, re.I), "the page loads something"
    scripts = re.findall(r"<script\b[^>]*>", page, re.I)
    assert scripts == ['<script type="application/json" class="pdv-data">', "<script>"]


def test_embedded_numbers_are_the_models_at_the_stored_precision(bundled):
    spec = embedded(bundled.view.html)
    L, H = len(bundled.output.attentions), bundled.output.attentions[0].shape[1]
    assert spec["layers"] == list(range(L)) and spec["heads"] == list(range(H))
    assert spec["maps"] == bundled.maps
    assert spec["tokens"] == bundled.tokenizer.convert_ids_to_tokens(bundled.tokenizer(TEXT)["input_ids"])
    assert spec["text"] == TEXT and spec["dtype"] == "float16"
    for layer in range(L):
        for head in range(H):
            for k, (name, expected) in enumerate(model_maps(bundled.output, layer, head).items()):
                np.testing.assert_array_equal(spec["array"][layer, head, k], expected.astype(np.float16),
                                              err_msg=f"{name}, layer {layer} head {head}")
    # float16 keeps the probabilities to 2^-11 relative, 2^-25 absolute below 2^-14 (subnormals)
    np.testing.assert_allclose(spec["array"][:, :, 0], np.stack(bundled.output.attentions)[:, 0], rtol=2 ** -11,
                               atol=2 ** -25)


def test_float32_stores_the_models_numbers_exactly():
    output = random_output(7)
    spec = embedded(viz.AttentionView(output, list("abcdefg"), dtype="float32").html)
    assert spec["dtype"] == "float32"
    for layer in range(2):
        for head in range(2):
            for k, expected in enumerate(model_maps(output, layer, head).values()):
                np.testing.assert_array_equal(spec["array"][layer, head, k], expected)


def test_terms_the_model_leaves_off_are_not_stored_and_cannot_be_opened():
    only_c2p = viz.AttentionView(random_output(5, pos_att_type="c2p"), list("abcde"))
    assert only_c2p.maps == ["attention", "c2c", "c2p"] and only_c2p.data.shape == (2, 2, 3, 5, 5)
    absolute = viz.AttentionView(random_output(5, relative_attention=False, position_biased_input=True), list("abcde"))
    assert absolute.maps == ["attention", "c2c"]
    with pytest.raises(ValueError, match=r"term must be one of \['attention', 'c2c', 'sum'\].*got 'p2c'"):
        viz.AttentionView(random_output(5, relative_attention=False, position_biased_input=True), list("abcde"),
                          term="p2c")


def test_layers_and_heads_keep_a_subset_and_the_page_opens_where_asked():
    output = random_output(6)
    view = viz.AttentionView(output, list("abcdef"), layers=[1], heads=[1, 0], head=0, term="c2p")
    spec = embedded(view.html)
    assert spec["layers"] == [1] and spec["heads"] == [1, 0]
    assert spec["initial"] == {"layer": 1, "head": 0, "term": "c2p"}
    np.testing.assert_array_equal(spec["array"][0, 1, 2], output.study.c2p[1][0, 0].astype(np.float16))
    with pytest.raises(ValueError, match=r"layer must be one of the stored layers \[1\], got 0"):
        viz.AttentionView(output, list("abcdef"), layers=[1], layer=0)
    with pytest.raises(ValueError, match=r"heads must lie in \[0, 2\), got 5"):
        viz.AttentionView(output, list("abcdef"), heads=[5])
    with pytest.raises(ValueError, match=r"tokens: got 2 labels for a sequence of length 6"):
        viz.AttentionView(output, ["a", "b"])
    with pytest.raises(ValueError, match="output_study=True"):
        viz.AttentionView(types.SimpleNamespace(attentions=output.attentions, study=None), list("abcdef"))


def test_text_and_tokens_cannot_close_the_script_or_add_markup():
    output = random_output(len(HOSTILE_TOKENS))
    page = viz.AttentionView(output, HOSTILE_TOKENS, text=HOSTILE_TEXT).html
    assert len(re.findall(r"</script", page, re.I)) == 2  # the data's and the code's own
    assert not re.search(r"<img|<!--", page, re.I)
    data = re.search(r'class="pdv-data">(.*?)</script>', page, re.S).group(1)
    assert data.isascii()  # no U+2028 or other raw non-ASCII inside the script
    assert "<title>pydeberta attention: x &lt;/script&gt;&lt;img src=x onerror=&quot;" in page
    spec = embedded(page)
    assert spec["tokens"] == HOSTILE_TOKENS and spec["text"] == HOSTILE_TEXT


def test_jupyter_gets_a_fragment_with_a_fresh_id_each_time(bundled):
    first, second = bundled.view._repr_html_(), bundled.view._repr_html_()
    ids = [re.match(r'<div id="(pydeberta-view-[0-9a-f]{12})"', fragment).group(1) for fragment in (first, second)]
    assert ids[0] != ids[1]
    assert "<html" not in first and f'document.getElementById("{ids[0]}")' in first
    assert embedded(first)["data"] == embedded(bundled.view.html)["data"]


def test_page_size_is_the_numbers_in_base64_and_a_constant():
    view = viz.AttentionView(random_output(40, num_hidden_layers=4, num_attention_heads=4), [str(i) for i in range(40)])
    assert view.data.shape == (4, 4, 4, 40, 40) and view.data.nbytes == 204_800
    size = len(view.html.encode())
    assert 4 * 204_800 / 3 < size < 4 * 204_800 / 3 + 16_000, size  # base64 plus the template (< 16 kB)


def test_too_large_a_view_is_refused_with_the_sizes_before_the_model_runs(bundled, monkeypatch):
    n = len(embedded(bundled.view.html)["tokens"])
    L, H, M = bundled.L, bundled.H, len(bundled.maps)
    values = L * H * M * n * n
    message = (f"attention view: {n} tokens x {L} layers x {H} heads x {M} maps is {values:,} values, {2 * values:,} "
               f"bytes as float16, over max_bytes=1,000")
    monkeypatch.setattr(type(bundled.model), "__call__", lambda *a, **k: pytest.fail("the model ran"))
    with pytest.raises(ValueError, match=re.escape(message)):
        viz.attention_view(bundled.model, bundled.tokenizer, TEXT, max_bytes=1000)
    with pytest.raises(ValueError, match=r"dtype must be one of \['float16', 'float32'\], got 'int8'"):
        viz.attention_view(bundled.model, bundled.tokenizer, TEXT, dtype="int8")


def test_values_beyond_float16_are_refused():
    output = random_output(3)
    study = types.SimpleNamespace(c2c=tuple(t * 1e9 for t in output.study.c2c), c2p=output.study.c2p,
                                  p2c=output.study.p2c)
    huge = types.SimpleNamespace(attentions=output.attentions, study=study)
    with pytest.raises(ValueError, match=r"beyond float16 \(\|x\| <= 65504\); give dtype='float32'"):
        viz.AttentionView(huge, list("abc"))
    assert np.isfinite(viz.AttentionView(huge, list("abc"), dtype="float32").data).all()


def test_save_writes_all_or_nothing(bundled, tmp_path, monkeypatch):
    path = tmp_path / "view.html"
    assert bundled.view.save(path) == path
    assert path.read_text(encoding="utf-8") == bundled.view.html
    path.write_text("before")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match=r"AttentionView.save: could not write .*view.html.*No space left"):
        bundled.view.save(path)
    assert path.read_text() == "before" and sorted(p.name for p in tmp_path.iterdir()) == ["view.html"]


def cli(*args, cwd):
    """``pydeberta ARGS`` in a subprocess, from ``cwd`` (the installed package, as a user runs it)."""
    return subprocess.run([sys.executable, "-m", "pydeberta.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cli_html_writes_the_page_of_every_layer_and_head(bundled, tmp_path):
    layer, head = bundled.L - 1, bundled.H - 1
    result = cli("attention", "pydeberta/tiny", TEXT, "--layer", layer, "--head", head, "--html", "view.html",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "wrote view.html"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.html"]  # --html alone: no figure
    spec = embedded((tmp_path / "view.html").read_text(encoding="utf-8"))
    assert spec["initial"] == {"layer": layer, "head": head, "term": "attention"} and spec["text"] == TEXT
    # the command runs the backbone (the masked LM's numbers) in another process, whose BLAS may
    # round differently in the last float32 bit: within one float16 step of the model's
    for i in range(bundled.L):
        for k, expected in enumerate(model_maps(bundled.output, i, head).values()):
            np.testing.assert_allclose(spec["array"][i, head, k], expected, rtol=2 ** -10, atol=2 ** -24)


def test_cli_html_beside_a_figure_and_its_errors(bundled, tmp_path):
    result = cli("attention", "pydeberta/tiny", "The cat sat.", "--html", "v.html", "--out", "f.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "v.html").stat().st_size > 0
    result = cli("attention", "pydeberta/tiny", "The cat sat.", "--html", "w.html", "--head", bundled.H + 5,
                 cwd=tmp_path)
    assert result.returncode == 1
    message = f"--head must lie in [0, {bundled.H}), got {bundled.H + 5}"
    assert result.stderr.strip() == f"pydeberta attention: error: {message}"
    assert not (tmp_path / "w.html").exists()


# --------------------------------------------------------------------------- in Chromium
@pytest.fixture(scope="session")
def chromium():
    """Debian's ``chromium`` and ``chromedriver`` on PATH, installed with apt-get when missing
    (``apt-get update`` first if the install fails, e.g. for lack of package lists); a clear
    failure, never a skip, when that does not work. Returns their paths."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        install_chromium()
    return shutil.which("chromium"), shutil.which("chromedriver")


def install_chromium():
    """``apt-get install`` Debian's chromium and chromium-driver (after ``apt-get update`` when
    the first try fails); fails the test with apt's message if either is still missing."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"]
    try:
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
        if result.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
            result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"the browser tests need Debian's chromium and chromium-driver; installing them failed: {exc}")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver on PATH; `apt-get install -y "
                    f"chromium chromium-driver` failed (exit {result.returncode}): {result.stderr[-1500:]}")


@pytest.fixture(scope="module")
def browser(chromium):
    """A headless Chromium driven through Debian's chromedriver (Selenium Manager never runs),
    for this module's tests (closed after them)."""
    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def opened(bundled, browser, tmp_path_factory):
    """A function that loads a view's saved page and returns its root element."""
    folder = tmp_path_factory.mktemp("pages")

    def open_view(view, name="view.html"):
        path = view.save(folder / name)
        browser.get(path.as_uri())
        root = browser.find_element(By.ID, "pydeberta-view")
        assert root.get_attribute("data-ready") == "1", browser.get_log("browser")
        return root

    return open_view


def key_values(browser):
    """The values the keys show for the active query (data-value), as float64."""
    return np.array([float(el.get_attribute("data-value"))
                     for el in browser.find_elements(By.CSS_SELECTOR, ".pdv-keys .pdv-token")])


def canvas_pixels(browser, selector):
    return browser.execute_script("return arguments[0].toDataURL();", browser.find_element(By.CSS_SELECTOR, selector))


def state(root):
    return {name: root.get_attribute(f"data-{name}") for name in ("layer", "head", "term", "query", "locked")}


def test_page_renders_every_token_and_selector(bundled, browser, opened):
    root = opened(bundled.view)
    tokens = bundled.view.tokens
    assert [el.text for el in browser.find_elements(By.CSS_SELECTOR, ".pdv-queries .pdv-token")] == \
           [t.strip() for t in tokens]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".pdv-keys .pdv-token")) == len(tokens)
    assert [o.text for o in Select(root.find_element(By.CLASS_NAME, "pdv-layer")).options] == \
           [str(i) for i in range(bundled.L)]
    assert [b.text for b in root.find_elements(By.CSS_SELECTOR, ".pdv-term")] == bundled.maps + ["sum"]
    assert state(root) == {"layer": "0", "head": "0", "term": "attention", "query": "", "locked": "false"}
    assert root.find_element(By.CLASS_NAME, "pdv-caption").text == TEXT
    lines = browser.find_element(By.CSS_SELECTOR, "canvas.pdv-lines")
    assert lines.size["height"] == 20 * len(tokens)
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_clicking_a_token_draws_its_lines_and_shows_its_values(bundled, browser, opened, tmp_path):
    root = opened(bundled.view)
    before_lines, before_matrix = canvas_pixels(browser, ".pdv-lines"), canvas_pixels(browser, ".pdv-matrix")
    before_shot = root.screenshot_as_png
    query = 8  # "▁light"
    browser.find_elements(By.CSS_SELECTOR, ".pdv-queries .pdv-token")[query].click()
    assert state(root) == {"layer": "0", "head": "0", "term": "attention", "query": str(query), "locked": "true"}
    active = browser.find_elements(By.CSS_SELECTOR, ".pdv-queries .pdv-active")
    assert [el.get_attribute("data-index") for el in active] == [str(query)]
    expected = bundled.output.attentions[0][0, 0, query].astype(np.float16)
    np.testing.assert_array_equal(key_values(browser), expected)
    shown = [el.text for el in browser.find_elements(By.CSS_SELECTOR, ".pdv-keys .pdv-value")]
    assert shown == [f"{v:.3f}" for v in expected.astype(np.float64)]
    assert canvas_pixels(browser, ".pdv-lines") != before_lines  # one query's lines instead of all
    assert canvas_pixels(browser, ".pdv-matrix") != before_matrix  # its row framed
    path = tmp_path / "attention_view.png"
    root.screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.read_bytes() != before_shot
    browser.find_elements(By.CSS_SELECTOR, ".pdv-queries .pdv-token")[query].click()  # let go
    assert root.get_attribute("data-locked") == "false"


def test_term_layer_and_head_selectors_change_what_is_drawn(bundled, browser, opened):
    root = opened(bundled.view)
    query = 3
    browser.find_elements(By.CSS_SELECTOR, ".pdv-queries .pdv-token")[query].click()
    seen = set()
    L, H = bundled.L, bundled.H
    for layer, head, term in ((0, 0, "c2c"), (L - 1, H - 1, "c2p"), (L // 2, H // 2, "p2c"), (1 % L, 0, "sum"),
                              (1 % L, 0, "attention")):
        Select(root.find_element(By.CLASS_NAME, "pdv-layer")).select_by_visible_text(str(layer))
        Select(root.find_element(By.CLASS_NAME, "pdv-head")).select_by_visible_text(str(head))
        root.find_element(By.CSS_SELECTOR, f'.pdv-term[data-term="{term}"]').click()
        assert state(root) == {"layer": str(layer), "head": str(head), "term": term, "query": str(query),
                               "locked": "true"}
        pressed = root.find_elements(By.CSS_SELECTOR, '.pdv-term[aria-pressed="true"]')
        assert [b.get_attribute("data-term") for b in pressed] == [term]
        maps = {name: m[query].astype(np.float16).astype(np.float32)
                for name, m in model_maps(bundled.output, layer, head).items()}
        maps["sum"] = maps["c2c"] + maps["c2p"] + maps["p2c"]  # float32, in this order, as the page adds
        np.testing.assert_array_equal(key_values(browser), maps[term], err_msg=f"{term} layer {layer} head {head}")
        seen.add(canvas_pixels(browser, ".pdv-matrix"))
    assert len(seen) == 5  # every choice drew another matrix


def test_hovering_previews_and_the_matrix_selects_a_row(bundled, browser, opened):
    root = opened(bundled.view)
    tokens = browser.find_elements(By.CSS_SELECTOR, ".pdv-queries .pdv-token")
    ActionChains(browser).move_to_element(tokens[5]).perform()
    assert (root.get_attribute("data-query"), root.get_attribute("data-locked")) == ("5", "false")
    ActionChains(browser).move_to_element(root.find_element(By.CLASS_NAME, "pdv-caption")).perform()
    assert root.get_attribute("data-query") == ""
    grid = root.find_element(By.CSS_SELECTOR, "canvas.pdv-matrix")
    cell = grid.size["width"] / len(bundled.view.tokens)
    # selenium offsets are from the element's centre: row 2, column 4
    ActionChains(browser).move_to_element_with_offset(grid, int((4.5 * cell) - grid.size["width"] / 2),
                                                      int((2.5 * cell) - grid.size["height"] / 2)).click().perform()
    assert (root.get_attribute("data-query"), root.get_attribute("data-locked")) == ("2", "true")
    readout = root.find_element(By.CLASS_NAME, "pdv-readout").text
    p = bundled.output.attentions[0][0, 0, 2, 4].astype(np.float16)
    assert readout == f"{bundled.view.tokens[2]} \u2192 {bundled.view.tokens[4]}: {float(p):.3f}"


def test_hostile_tokens_and_text_stay_text_in_the_browser(browser, opened):
    output = random_output(len(HOSTILE_TOKENS))
    root = opened(viz.AttentionView(output, HOSTILE_TOKENS, text=HOSTILE_TEXT), "hostile.html")
    assert browser.execute_script("return window.__pwned === undefined;")
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 2
    assert browser.execute_script("return arguments[0].textContent;",
                                  root.find_element(By.CLASS_NAME, "pdv-caption")) == HOSTILE_TEXT
    shown = browser.execute_script("return Array.from(arguments[0].querySelectorAll('.pdv-queries .pdv-token'),"
                                   " e => e.textContent);", root)
    assert shown == HOSTILE_TOKENS
    assert browser.title.startswith("pydeberta attention: x </script><img")
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
