"""``batchdigits review``: the session (queue, labels saved atomically, resume, paths kept
inside the images folder), its routes' answers to bad requests, and a real browser
correcting rows with the keyboard."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
from conftest import save_digit
from helpers import EXE, free_port, start_server

pytest.importorskip("flask", reason="the web extra is not installed")

from batchdigits.errors import InputNotFoundError, LabelError  # noqa: E402
from batchdigits.options import PredictOptions  # noqa: E402
from batchdigits.run.driver import predict_folder  # noqa: E402
from batchdigits.web.review_session import ReviewSession, labels_path_for  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def predictions(tmp_path, mnist, model_file):
    images = tmp_path / "images"
    for i in range(24):
        save_digit(images / ("sub" if i % 3 else "") / f"d{i:02d}.png", mnist.x_test[i])
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    (tmp_path / "secret.txt").write_text("outside the images folder")
    out = tmp_path / "p.csv"
    predict_folder(images, out, PredictOptions(model=model_file))
    return out, images


def test_queue_labels_and_resume(predictions):
    out, images = predictions
    session = ReviewSession.open(out, images)
    assert session.labels_path == labels_path_for(out) == out.with_name("p.labels.csv")
    queue = session.queue("all")
    assert len(queue) == 25 and queue[0]["path"] == "broken.png"  # errors first
    confidences = [r["confidence"] for r in queue[1:]]
    assert confidences == sorted(confidences)
    assert all(r["needs_review"] for r in session.queue("review"))
    assert [r["path"] for r in session.queue("errors")] == ["broken.png"]
    first = queue[1]["path"]
    assert session.set_label(first, "4") == 1 and session.set_label("broken.png", "x") == 2
    with pytest.raises(LabelError):
        session.set_label(first, "12")
    with pytest.raises(InputNotFoundError):
        session.set_label("not/a/row.png", "1")
    again = ReviewSession.open(out, images)  # a second session resumes
    assert again.labels == {first: "4", "broken.png": "x"}
    with open(session.labels_path, newline="") as f:
        assert list(csv.reader(f)) == [["path", "label"], ["broken.png", "x"], [first, "4"]]
    assert session.set_label(first, "") == 1  # cleared


def test_only_rows_inside_the_images_folder_are_served(predictions, tmp_path):
    out, images = predictions
    session = ReviewSession.open(out, images)
    assert session.image_file("sub/d01.png") == (images / "sub" / "d01.png").resolve()
    assert session.image_file("../secret.txt") is None
    assert session.image_file(str(tmp_path / "secret.txt")) is None
    # A row whose file is a link out of the images folder: a row, and still not served.
    os.symlink(tmp_path / "secret.txt", images / "link.png")
    with open(out, "a", encoding="utf-8") as f:
        f.write("link.png,1,0.500000,true,\n")
    session = ReviewSession.open(out, images)
    assert session.row("link.png") is not None
    assert session.image_file("link.png") is None


def test_routes_answer_bad_requests_with_4xx(predictions, model_file):
    from batchdigits.web.predictor import Predictor
    from batchdigits.web.review_app import create_review_app

    out, images = predictions
    session = ReviewSession.open(out, images)
    client = create_review_app(session, Predictor(PredictOptions(model=model_file))).test_client()
    assert client.get("/api/rows").status_code == 200
    assert "numbers" not in client.get("/api/rows").json  # as before --numbers existed
    assert client.get("/api/rows?show=digit&digit=7").status_code == 200
    assert client.get("/api/rows?show=digit&digit=12").status_code == 400
    assert client.get("/api/image?path=sub/d01.png").status_code == 200
    seen = client.get("/api/seen?path=sub/d01.png").json
    assert seen["normalized"].startswith("data:image/png") and seen["second"] in range(10)
    bad = [
        client.get("/nowhere"),
        client.get("/api/rows?show=everything"),
        client.get("/api/image?path=../secret.txt"),
        client.get("/api/image?path=/etc/passwd"),
        client.get("/api/image?path=not-a-row.png"),
        client.get("/api/seen?path=..%2Fsecret.txt"),
        client.post("/api/label", json={"path": "sub/d01.png", "label": "11"}),
        client.post("/api/label", json={"path": "sub/d01.png", "label": 3}),
        client.post("/api/label", json={"path": "missing.png", "label": "3"}),
        client.post("/api/label", json={"path": "../secret.txt", "label": "3"}),
        client.post("/api/label", data="not json", content_type="text/plain"),
        client.get("/api/label"),
    ]
    assert [r.status_code // 100 for r in bad] == [4] * len(bad)
    assert all("error" in r.json for r in bad)
    assert session.labels == {}


@pytest.mark.slow
def test_browser_corrects_three_rows_with_the_keyboard(predictions, model_file, tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (see the README's optional line)")
    playwright = pytest.importorskip("playwright.sync_api")
    out, images = predictions
    port = free_port()
    exe = EXE
    args = [exe, "review", str(out), "--images", str(images), "--model", str(model_file)]
    server = start_server([*args, "--port", str(port), "--server", "waitress"], port)
    url = f"http://127.0.0.1:{port}/"
    try:
        labelled = _label_three(playwright, url, tmp_path)
    finally:
        server.terminate()
        server.wait(30)
    with open(labels_path_for(out), newline="") as f:
        saved = {row["path"]: row["label"] for row in csv.DictReader(f)}
    assert saved == labelled and len(saved) == 3


def _label_three(playwright, url: str, tmp_path: Path) -> dict[str, str]:
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            viewport={"width": 1000, "height": 700},
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.goto(url)
        page.wait_for_function("document.getElementById('position').textContent.includes('/')")
        page.select_option("#show", "all")
        page.wait_for_function("document.getElementById('path').textContent !== ''")
        labelled = {}
        for key in ("3", "x", "Enter"):
            path = page.text_content("#path")
            prediction = page.text_content("#prediction")
            page.keyboard.press(key)
            page.wait_for_function(f"document.getElementById('path').textContent !== {path!r}")
            labelled[path] = {"Enter": prediction}.get(key, key)
        page.wait_for_function("document.getElementById('seen').src.startsWith('data:')")
        if os.environ.get("BATCHDIGITS_SCREENSHOT_REVIEW"):  # examples/review-page.png
            page.screenshot(path=os.environ["BATCHDIGITS_SCREENSHOT_REVIEW"])
        page.reload()
        page.select_option("#show", "all")
        page.wait_for_function("document.getElementById('path').textContent !== ''")
        for path, label in labelled.items():
            shown = page.evaluate(f"rows.find((r) => r.path === {path!r}).label")
            assert shown == label, path
        browser.close()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
    return labelled


def test_a_rebinding_host_cannot_label_or_read(predictions, model_file):
    """DNS rebinding: a page elsewhere whose name resolves to 127.0.0.1 sends its own
    name as Host. It gets 400, and no label is saved."""
    from batchdigits.options import ServeOptions
    from batchdigits.web.predictor import Predictor
    from batchdigits.web.review_app import create_review_app

    out, images = predictions
    session = ReviewSession.open(out, images)
    predictor = Predictor(PredictOptions(model=model_file))
    client = create_review_app(session, predictor).test_client()
    evil = {"Host": "attacker.example:8000"}
    label = client.post("/api/label", json={"path": "sub/d01.png", "label": "3"}, headers=evil)
    image = client.get("/api/image?path=sub/d01.png", headers=evil)
    assert (label.status_code, image.status_code) == (400, 400)
    assert "Host is not allowed" in label.json["error"] and session.labels == {}
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000"):
        assert client.get("/api/rows", headers={"Host": host}).status_code == 200
    allowed = create_review_app(session, predictor, ServeOptions(allow_hosts=("digits.lan",)))
    ok = allowed.test_client().post(
        "/api/label", json={"path": "sub/d01.png", "label": "3"}, headers={"Host": "digits.lan"}
    )
    assert ok.status_code == 200 and session.labels == {"sub/d01.png": "3"}


@pytest.fixture
def number_predictions(tmp_path, mnist):
    from helpers import number_image

    images = tmp_path / "numbers"
    for i, indices in enumerate([[3, 10, 2], [13, 5], [3, 7, 1, 11, 4], [8], [21, 22, 23]]):
        save_digit(images / f"n{i}.png", number_image(mnist, indices)[0])
    out = tmp_path / "numbers.csv"
    predict_folder(images, out, PredictOptions(numbers=True))
    return out, images


def test_review_numbers_keeps_strings_and_takes_numbers(number_predictions):
    from batchdigits.evaluation.labels import read_labels

    out, images = number_predictions
    with pytest.raises(LabelError, match="review --numbers"):
        ReviewSession.open(out, images)  # a numbers CSV read as digits would lose zeros
    session = ReviewSession.open(out, images, numbers=True)
    predictions = {r["path"]: r["prediction"] for r in session.rows}
    assert predictions["n0.png"].startswith("0") and len(predictions["n2.png"]) >= 4
    assert all(isinstance(p, str) for p in predictions.values())
    shown = session.queue("digit", predictions["n2.png"])
    assert [r["path"] for r in shown] == ["n2.png"]
    assert session.set_label("n0.png", "0-12") == 1 and session.labels["n0.png"] == "012"
    assert session.set_label("n1.png", "x") == 2
    for bad in ("12a", "1/2", "-", "٣"):
        with pytest.raises(LabelError):
            session.set_label("n2.png", bad)
    again = ReviewSession.open(out, images, numbers=True)
    assert again.labels == {"n0.png": "012", "n1.png": "x"}
    assert read_labels(session.labels_path, numbers=True) == again.labels  # evaluate, tune


def test_review_numbers_routes(number_predictions):
    import base64
    import io

    from PIL import Image

    from batchdigits.web.predictor import Predictor
    from batchdigits.web.review_app import create_review_app

    out, images = number_predictions
    session = ReviewSession.open(out, images, numbers=True)
    predictor = Predictor(PredictOptions(numbers=True))
    client = create_review_app(session, predictor).test_client()
    rows = client.get("/api/rows?show=all").json
    assert rows["numbers"] is True and {r["path"] for r in rows["rows"]} == {
        f"n{i}.png" for i in range(5)
    }
    number = session.row("n2.png")["prediction"]
    shown = client.get(f"/api/rows?show=digit&digit={number}").json["rows"]
    assert [r["path"] for r in shown] == ["n2.png"]
    seen = client.get("/api/seen?path=n2.png").json
    assert seen["prediction"] == number and len(seen["digit_confidences"]) == len(number)
    assert seen["second"] is None
    png = base64.b64decode(seen["normalized"].split(",")[1])
    assert Image.open(io.BytesIO(png)).size == (192, 32)
    saved = client.post("/api/label", json={"path": "n0.png", "label": "0.12"}).json
    assert saved["label"] == "012" and session.labels == {"n0.png": "012"}
    bad = [
        client.get("/api/rows?show=digit&digit=1x"),
        client.post("/api/label", json={"path": "n0.png", "label": "12a"}),
    ]
    assert [r.status_code for r in bad] == [400, 400] and session.labels == {"n0.png": "012"}
