import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, portrait_array, run_cli, write_portrait
from PIL import Image

from portraitcolor import images, lab
from portraitcolor.inputs import read_file_list


@pytest.fixture
def gray_dir(tmp_path):
    root = tmp_path / "old"
    write_portrait(root / "a.jpg", 90, 60, seed=1, gray=True)
    write_portrait(root / "b.png", 64, 64, seed=2, gray=True)
    write_portrait(root / "nested" / "c.png", 50, 70, seed=3, gray=True)
    return root


def _l_of(path):
    return lab.rgb_to_l(images.read_image(path).rgb)


def test_default_outputs_beside_inputs_keep_size_and_lightness(gray_dir, tiny_model_file):
    result = run_cli("colorize", str(gray_dir), "-m", str(tiny_model_file), check=True)
    outputs = result.stdout.decode().split()
    assert outputs == [str(gray_dir / "a_color.jpg"), str(gray_dir / "b_color.png")]
    for source, output in [("b.png", "b_color.png"), ("a.jpg", "a_color.jpg")]:
        before, after = _l_of(gray_dir / source), _l_of(gray_dir / output)
        assert before.shape == after.shape
        tolerance = 1.0 if source.endswith(".png") else 3.0  # JPEG re-encoding adds its own error
        assert np.abs(before - after).mean() < tolerance / 2 and np.abs(before - after).max() < 8 * tolerance
    # a second run refuses to overwrite and says so, for each file
    again = run_cli("colorize", str(gray_dir), "-m", str(tiny_model_file))
    assert again.returncode == 1 and again.stderr.count(b"exists") == 2
    skipped = run_cli("colorize", str(gray_dir), "-m", str(tiny_model_file), "--skip-existing")
    assert skipped.returncode == 0 and skipped.stdout == b""


def test_output_dir_mirrors_layout_with_json(gray_dir, tmp_path, tiny_model_file):
    out = tmp_path / "colour"
    result = run_cli("colorize", str(gray_dir), "-r", "-O", str(out), "--json", "-m", str(tiny_model_file), check=True)
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert {r["output"] for r in records} == {str(out / "a.jpg"), str(out / "b.png"), str(out / "nested" / "c.png")}
    c = next(r for r in records if r["output"].endswith("c.png"))
    assert (c["width"], c["height"]) == (70, 50) and c["seconds"] > 0
    assert Image.open(out / "nested" / "c.png").size == (70, 50)


def test_two_inputs_with_one_output_name_never_share_a_result(tmp_path, tiny_model_file):
    first = write_portrait(tmp_path / "a" / "face.png", 40, 40, seed=1, gray=True)
    second = write_portrait(tmp_path / "b" / "face.png", 40, 40, seed=2, gray=True)
    out = tmp_path / "out"
    listing = b"".join(os.fsencode(p) + b"\0" for p in (first, second))
    for args, stdin in (([str(first), str(second)], None), (["--files-from", "-", "-0"], listing)):
        result = run_cli("colorize", *args, "-O", str(out), "-m", str(tiny_model_file), input=stdin)
        assert result.returncode == 1 and result.stdout.decode().split() == [str(out / "face.png")]
        errors = result.stderr.decode().strip().splitlines()
        assert len(errors) == 1 and str(second) in errors[0] and "already the output of" in errors[0]
        (out / "face.png").unlink()
    # Folder inputs mirror their contents under -O, so two folders holding one name collide alike.
    both = run_cli("colorize", str(tmp_path / "a"), str(tmp_path / "b"), "-O", str(out), "-m", str(tiny_model_file))
    assert both.returncode == 1 and both.stdout.decode().split() == [str(out / "face.png")]


def test_an_output_never_replaces_an_input_of_the_run(tmp_path, tiny_model_file):
    """Not even with --overwrite: a.jpg's default output a_color.jpg is here a photo of its own
    (given, listed, or reached through a hard link), and -O onto the inputs' own folder names
    the inputs themselves."""
    folder = tmp_path / "f"
    photo = write_portrait(folder / "a.jpg", 40, 40, seed=1, gray=True)
    other = write_portrait(folder / "a_color.jpg", 40, 40, seed=2, gray=True)
    os.link(other, folder / "linked.jpg")
    precious = other.read_bytes()
    cases = [
        ([str(photo), str(other)], [f"output {other} is the input {other}: it would be replaced"]),
        ([str(photo), str(folder / "linked.jpg")], [f"output {other} is the input {folder / 'linked.jpg'}: it would be replaced"]),
        ([str(photo), str(other), "-O", str(folder)], [f"output {folder / name} is the input {folder / name}: it would be replaced" for name in ("a.jpg", "a_color.jpg")]),
    ]
    for args, reasons in cases:
        result = run_cli("colorize", *args, "--overwrite", "-m", str(tiny_model_file))
        errors = result.stderr.decode().strip().splitlines()
        assert result.returncode == 1 and len(errors) == len(reasons), (args, errors)
        assert all(reason in line for reason, line in zip(reasons, errors)), errors
        assert other.read_bytes() == precious and photo.exists()
    # The photo named like a result was itself coloured, beside it, in the first two runs.
    assert (folder / "a_color_color.jpg").exists() and (folder / "linked_color.jpg").exists()


def test_a_later_run_tells_its_own_results_from_photos_named_like_them(tmp_path, tiny_model_file):
    """The results of one run, in every format, are not inputs of the next (the real writer and
    the real folder walk); a photo of the user's named like a result is, and stays untouched."""
    folder = tmp_path / "f"
    for i, name in enumerate(["a.jpg", "b.png", "c.tiff", "d.webp", "e.gif"]):
        write_portrait(folder / name, 40, 40, seed=i, gray=True)
    first = run_cli("colorize", str(folder), "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert len(first) == 5 and all(Path(p).stem.endswith("_color") for p in first)
    again = run_cli("colorize", str(folder), "--overwrite", "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert again == first and not list(folder.glob("*_color_color*"))

    mine = write_portrait(folder / "mine.jpg", 40, 40, seed=7, gray=True)
    coloured_by_hand = write_portrait(folder / "mine_color.jpg", 40, 40, seed=8)
    precious = coloured_by_hand.read_bytes()
    result = run_cli("colorize", str(folder), "--overwrite", "-m", str(tiny_model_file))
    errors = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and errors == [f"portraitcolor: {mine}: output {coloured_by_hand} is the input {coloured_by_hand}: it would be replaced"]
    assert coloured_by_hand.read_bytes() == precious and (folder / "mine_color_color.jpg").exists()


def test_a_shell_glob_run_twice_treats_its_own_results_as_results(tmp_path, tiny_model_file):
    """`colorize *.jpg` again lists a_color.jpg beside a.jpg: that input is colorize's result,
    so it is not coloured again, and a.jpg's job treats it as an existing output."""
    photo = write_portrait(tmp_path / "a.jpg", 40, 40, seed=1, gray=True)
    result = tmp_path / "a_color.jpg"
    run_cli("colorize", str(photo), "-m", str(tiny_model_file), check=True)
    for flag, written in (("--skip-existing", []), ("--overwrite", [str(result)])):
        before = result.stat().st_mtime_ns
        again = run_cli("colorize", str(photo), str(result), flag, "-m", str(tiny_model_file), "--json", check=True)
        records = [json.loads(line) for line in again.stdout.decode().splitlines()]
        assert [r["output"] for r in records if not r["skipped"]] == written
        assert records[-1] == {**records[-1], "input": str(result), "output": None, "skipped": True}
        assert "not coloured again" in records[-1]["warning"] and not (tmp_path / "a_color_color.jpg").exists()
        assert (result.stat().st_mtime_ns != before) == bool(written)


def test_a_results_folder_inside_the_input_folder_is_not_an_input(gray_dir, tiny_model_file):
    out = gray_dir / "colour"
    first = run_cli("colorize", str(gray_dir), "-r", "-O", str(out), "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert sorted(first) == sorted(str(out / p) for p in ("a.jpg", "b.png", "nested/c.png"))
    for flag, listed in (("--skip-existing", []), ("--overwrite", first)):
        again = run_cli("colorize", str(gray_dir), "-r", "-O", str(out), flag, "-m", str(tiny_model_file), check=True)
        assert again.stdout.decode().split() == listed and not (out / "colour").exists()


def test_results_of_older_versions_and_other_programs_are_told_apart(tmp_path):
    # An older result: the profile colorize embeds, made at the time of its run, no Software tag.
    from PIL import ImageCms

    made_then = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    made_then[24:36] = struct.pack(">6H", 2024, 7, 14, 16, 41, 9)
    older = write_portrait(tmp_path / "older_color.jpg", 20, 20, icc_profile=bytes(made_then))
    exif = Image.Exif()
    exif[0x0131] = "GIMP 2.10.38"
    edited = write_portrait(tmp_path / "edited_color.jpg", 20, 20, icc_profile=images.srgb_icc(), exif=exif.tobytes())
    plain = write_portrait(tmp_path / "plain_color.png", 20, 20)
    broken = tmp_path / "broken_color.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    assert images.written_by_portraitcolor(older)
    assert not any(images.written_by_portraitcolor(p) for p in (edited, plain, broken))


def test_a_photo_of_several_frames_says_that_only_the_first_is_coloured(tmp_path, tiny_model_file):
    frames = [Image.fromarray(portrait_array(40, 48, seed=i, gray=True)).convert("L") for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=80, loop=0)
    frames[0].save(tmp_path / "pages.tiff", save_all=True, append_images=frames[1:2])
    colour = [Image.fromarray(portrait_array(40, 48, seed=i)) for i in range(2)]
    colour[0].save(tmp_path / "camera.mpo", save_all=True, append_images=colour[1:])  # a JPEG with its preview
    assert Image.open(tmp_path / "camera.mpo").format == "MPO"
    frames[0].save(tmp_path / "still.png")
    result = run_cli("colorize", str(tmp_path), "-O", str(tmp_path / "out"), "--json", "-m", str(tiny_model_file), check=True)
    warnings = {json.loads(line)["input"]: json.loads(line).get("warning") for line in result.stdout.decode().splitlines()}
    assert warnings == {
        str(tmp_path / "anim.gif"): "it holds 3 frames or pages: only the first is coloured",
        str(tmp_path / "camera.mpo"): None,
        str(tmp_path / "pages.tiff"): "it holds 2 frames or pages: only the first is coloured",
        str(tmp_path / "still.png"): None,
    }
    assert result.stderr.decode().splitlines() == [
        f"portraitcolor: {tmp_path / name}: it holds {count} frames or pages: only the first is coloured" for name, count in (("anim.gif", 3), ("pages.tiff", 2))
    ]
    assert Image.open(tmp_path / "out" / "anim.png").size == (48, 40)  # a GIF's result is a PNG


def test_stdin_to_stdout_pipeline(tmp_path, tiny_model_file):
    source = write_portrait(tmp_path / "in.png", 40, 100, gray=True)
    result = run_cli("colorize", "-", "-o", "-", "-m", str(tiny_model_file), input=source.read_bytes(), check=True)
    image = Image.open(io.BytesIO(result.stdout))
    assert image.format == "PNG" and image.size == (100, 40) and image.mode == "RGB"


def test_files_from_nul_separated_stdin(gray_dir, tmp_path, tiny_model_file):
    names = [gray_dir / "a.jpg", gray_dir / "nested" / "c.png"]
    listing = b"".join(os.fsencode(p) + b"\0" for p in names)
    out = tmp_path / "o"
    result = run_cli("colorize", "--files-from", "-", "-0", "-O", str(out), "-m", str(tiny_model_file), input=listing, check=True)
    assert result.stdout.decode().split() == [str(out / "a.jpg"), str(out / "c.png")]


def test_alpha_and_colour_input_and_aspect(tmp_path, tiny_model_file):
    rgba = Image.fromarray(portrait_array(48, 96, seed=5)).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (48, 1))
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "t.png")
    run_cli("colorize", str(tmp_path / "t.png"), "-o", str(tmp_path / "t_out.png"), "-m", str(tiny_model_file), check=True)
    out = Image.open(tmp_path / "t_out.png")
    assert out.mode == "RGBA" and out.size == (96, 48)
    np.testing.assert_array_equal(np.asarray(out)[..., 3], alpha)


def test_bad_inputs_are_reported_and_the_rest_processed(tmp_path, tiny_model_file):
    good = write_portrait(tmp_path / "good.png", 32, 32, gray=True)
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:60])
    (tmp_path / "folder.jpg").mkdir()
    big = tmp_path / "big.png"
    Image.new("L", (400, 400)).save(big)
    out = tmp_path / "out"
    args = [str(p) for p in (tmp_path / "text.jpg", tmp_path / "empty.png", truncated, good, tmp_path / "folder.jpg", big, tmp_path / "missing.png")]
    result = run_cli("colorize", *args, "-O", str(out), "--max-pixels", "100000", "-m", str(tiny_model_file))
    assert result.returncode == 1
    assert result.stdout.decode().split() == [str(out / "good.png")]
    errors = result.stderr.decode().strip().splitlines()
    assert len(errors) == 6 and b"Traceback" not in result.stderr
    expected = [("text.jpg", "not an image"), ("empty.png", "0 bytes"), ("cut.png", "truncated"),
                ("folder.jpg", "folder holds no images"), ("big.png", "too large"), ("missing.png", "no such file")]
    for name, reason in expected:
        assert any(name in line and reason in line for line in errors), (name, errors)
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]  # nothing half-written


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "no inputs"),
        (["a.png", "b.png", "-o", "x.png"], "exactly one input"),
        (["-"], "needs -o"),
        (["a.png", "-o", "x.png", "-O", "d"], "cannot be used together"),
        (["a.png", "--overwrite", "--skip-existing"], "cannot be used together"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, message):
    result = run_cli("colorize", *args, cwd=tmp_path)
    assert result.returncode == 2 and message.encode() in result.stderr


def test_without_any_model_the_message_says_how_to_get_one(tmp_path):
    """An installation without the packaged model (e.g. a trimmed build) explains itself."""
    source = write_portrait(tmp_path / "x.png", 32, 32, gray=True)
    code = (
        "import sys, portraitcolor.weights as weights\n"
        f"weights.PACKAGED[weights.BUILTIN_NAME] = weights.Path({str(tmp_path / 'none.safetensors')!r})\n"
        "from portraitcolor.cli import main\n"
        f"sys.argv = ['portraitcolor', 'colorize', {str(source)!r}]\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1 and b"portraitcolor train" in result.stderr and b"models import" in result.stderr
    assert b"Traceback" not in result.stderr


def test_python_api(tmp_path, tiny_model_file):
    from portraitcolor import colorize_image, load_model

    model = load_model(tiny_model_file)
    out = colorize_image(write_portrait(tmp_path / "p.png", 40, 30, gray=True), model)
    assert out.size == (30, 40) and out.mode == "RGB"
    from_array = colorize_image(portrait_array(32, 48, gray=True)[..., 0], model)
    assert from_array.size == (48, 32)


def test_file_list_parsing():
    assert read_file_list(b"a.jpg\nb c.png\r\n\n", nul=False) == ["a.jpg", "b c.png"]
    assert read_file_list(b"a\nb.jpg\0c.jpg\0", nul=False) == ["a\nb.jpg", "c.jpg"]


def test_each_input_format_gets_a_result_it_can_hold(tmp_path, tiny_model_file):
    """A result keeps its input's format where that holds a colour photo; a GIF's (256
    colours), and a format Pillow reads but cannot write (XPM here, PSD alike), is a PNG; a
    camera's MPO is a JPEG. An output named in such a format is refused with one line."""
    folder = tmp_path / "in"
    for name in ("a.jpg", "b.tiff", "c.gif", "d.bmp"):
        write_portrait(folder / name, 40, 48, seed=len(name), gray=True)
    colour = [Image.fromarray(portrait_array(40, 48, seed=i)) for i in range(2)]
    colour[0].save(folder / "e.mpo", save_all=True, append_images=colour[1:])
    (folder / "f.xpm").write_text('/* XPM */\nstatic char *f[] = {\n"4 4 2 1",\n"  c #000000",\n". c #C0C0C0",\n" .. ",\n"....",\n"....",\n" .. "\n};\n')
    written = run_cli("colorize", str(folder), "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert sorted(Path(p).name for p in written) == ["a_color.jpg", "b_color.tiff", "c_color.png", "d_color.bmp", "e_color.jpg", "f_color.png"]
    assert {Path(p).name: Image.open(p).format for p in written} == {
        "a_color.jpg": "JPEG", "b_color.tiff": "TIFF", "c_color.png": "PNG", "d_color.bmp": "BMP", "e_color.jpg": "JPEG", "f_color.png": "PNG",
    }
    mirrored = run_cli("colorize", str(folder), "-O", str(tmp_path / "out"), "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert sorted(Path(p).name for p in mirrored) == ["a.jpg", "b.tiff", "c.png", "d.bmp", "e.jpg", "f.png"]

    refused = run_cli("colorize", str(folder / "a.jpg"), "-o", str(tmp_path / "a.psd"), "-m", str(tiny_model_file))
    assert refused.returncode == 1 and not (tmp_path / "a.psd").exists()
    assert refused.stderr.decode().splitlines() == [
        f"portraitcolor: {folder / 'a.jpg'}: cannot write PSD files ({tmp_path / 'a.psd'}): name the output .png, .jpg, .tif or .webp"
    ]


def test_an_avif_result_keeps_alpha_profile_and_signature(tmp_path, tiny_model_file):
    """AVIF (a phone's or a browser's) holds alpha, an ICC profile and EXIF like WebP: its
    result carries all three, and a second run over the folder knows it for a result."""
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF")
    rgba = np.dstack([portrait_array(64, 48, seed=3, gray=True), np.full((64, 48), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.avif")
    written = run_cli("colorize", str(tmp_path), "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert written == [str(tmp_path / "cut_color.avif")]
    result = Image.open(written[0])
    assert result.format == "AVIF" and result.mode == "RGBA" and images.is_srgb_icc(result.info.get("icc_profile"))
    assert images.written_by_portraitcolor(written[0])
    again = run_cli("colorize", str(tmp_path), "--overwrite", "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert again == written


def _write_heic(path: Path, *, seed: int) -> Path:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(portrait_array(64, 48, seed=seed)).save(path, format="HEIF", quality=90)
    return path


def test_an_iphone_heic_photo_is_read_through_the_heif_extra(tmp_path, tiny_model_file):
    """A HEIC photo (what an iPhone takes of an old print) is coloured into a JPEG when
    pillow-heif is installed, and found in a folder; without it, one line names the photo and
    the extra that reads it, and the other photos are still coloured."""
    heic = _write_heic(tmp_path / "in" / "print.heic", seed=1)
    second = _write_heic(tmp_path / "in" / "print2.heic", seed=4)  # decoded beside the first: one registers the reader
    write_portrait(tmp_path / "in" / "scan.png", 40, 40, seed=2, gray=True)
    written = run_cli("colorize", str(tmp_path / "in"), "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert sorted(Path(p).name for p in written) == ["print2_color.jpg", "print_color.jpg", "scan_color.png"]
    result = Image.open(tmp_path / "in" / "print_color.jpg")
    assert result.format == "JPEG" and result.size == (48, 64) and images.written_by_portraitcolor(tmp_path / "in" / "print_color.jpg")

    without = tmp_path / "without_heif"  # pillow-heif made unimportable, as on a plain install
    without.mkdir()
    (without / "pillow_heif.py").write_text("raise ImportError('not installed')\n")
    for output in written:
        Path(output).unlink()
    result = run_cli("colorize", str(tmp_path / "in"), "-m", str(tiny_model_file), env={"PYTHONPATH": f"{without}{os.pathsep}{REPO}"})
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"portraitcolor: {photo}: a HEIF/HEIC photo: reading it needs pillow-heif (pip install 'portraitcolor[heif]')" for photo in (heic, second)
    ]
    assert result.stdout.decode().split() == [str(tmp_path / "in" / "scan_color.png")]


def test_the_same_photo_gives_the_same_file(tmp_path, tiny_model_file):
    """Two runs a second apart write byte-identical results (nothing in a result carries the
    time it was made: the embedded profile's header once did)."""
    import time

    photo = write_portrait(tmp_path / "a.jpg", 40, 48, seed=2, gray=True)
    run_cli("colorize", str(photo), "-o", str(tmp_path / "first.jpg"), "-m", str(tiny_model_file), check=True)
    time.sleep(1.1)  # the profile's header counted seconds
    run_cli("colorize", str(photo), "-o", str(tmp_path / "second.jpg"), "-m", str(tiny_model_file), check=True)
    assert (tmp_path / "first.jpg").read_bytes() == (tmp_path / "second.jpg").read_bytes()


def _scan16(path: Path, *, dpi=None, description=None) -> Path:
    """A 16-bit gray scan: a smooth ramp with steps finer than 8 bits, and a face, as Pillow writes it."""
    face = portrait_array(72, 56, seed=5, gray=True)[..., 0].astype(np.float64)
    ramp = np.linspace(0.0, 600.0, 56)[None, :]  # under 3 of 255 levels: only 16 bits tell its steps
    pixels = np.clip(face * 240.0 + ramp, 0, 65535).astype(np.uint16)
    options = {"dpi": dpi} if dpi else {}
    if description:
        options["description"] = description
    Image.fromarray(pixels).save(path, **options)
    return path


def test_a_16_bit_scan_keeps_its_16_bits(tmp_path, tiny_model_file):
    """The real writers and readers: a 16-bit gray PNG and TIFF (a scanner's) get 16-bit colour
    results, tagged sRGB, signed, with the scan's resolution (and the TIFF's description), whose
    lightness is the scan's to 0.02 L (8 bits would be off by up to 0.2); a second run knows
    them for results; the same scan to a JPEG is 8-bit; two runs give the same bytes."""
    import cv2

    scans = tmp_path / "scans"
    scans.mkdir()
    _scan16(scans / "a.png", dpi=(600, 600))
    _scan16(scans / "b.tif", dpi=(1200, 1200), description="Grandpa, 1931")
    written = run_cli("colorize", str(scans), "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert [Path(p).name for p in written] == ["a_color.png", "b_color.tif"]
    for output, scan, dpi in zip(written, ("a.png", "b.tif"), (600, 1200)):
        pixels = cv2.imread(output, cv2.IMREAD_UNCHANGED)[..., ::-1]
        assert pixels.dtype == np.uint16 and pixels.shape == (72, 56, 3)
        lightness = lab.rgb_to_l(pixels.astype(np.float32) / 65535.0)
        assert np.abs(lightness - images.read_lightness(scans / scan).l).max() < 0.02
        with Image.open(output) as result:
            assert images.is_srgb_icc(result.info.get("icc_profile")) and round(result.info["dpi"][0]) == dpi
        assert images.written_by_portraitcolor(output)
    assert Image.open(written[1]).getexif().get(270) == "Grandpa, 1931"
    again = run_cli("colorize", str(scans), "--overwrite", "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert again == written  # the results are not coloured again

    eight = run_cli("colorize", str(scans / "a.png"), "-o", str(tmp_path / "a.jpg"), "-m", str(tiny_model_file), check=True)
    assert eight.returncode == 0 and cv2.imread(str(tmp_path / "a.jpg"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    for scan in ("a.png", "b.tif"):
        first = (scans / Path(scan).with_stem(Path(scan).stem + "_color")).read_bytes()
        piped = run_cli("colorize", "-", "-o", "-", "-m", str(tiny_model_file), input=(scans / scan).read_bytes(), check=True).stdout
        assert piped == first  # through a pipe too, byte for byte


def test_a_folder_runs_bar_counts_against_its_total(tmp_path, tiny_model_file):
    """On a terminal the bar knows how many photos the run holds (it showed 60/? before):
    the real CLI with its stderr on a pseudo-terminal."""
    import pty

    for i in range(3):
        write_portrait(tmp_path / "in" / f"p{i}.png", 40, 40, seed=i, gray=True)
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "portraitcolor", "colorize", str(tmp_path / "in"), "-m", str(tiny_model_file)],
        stdout=subprocess.PIPE, stderr=follower, env=env,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert process.wait(timeout=120) == 0 and len(process.stdout.read().split()) == 3
    assert b"/3" in shown and b"/?" not in shown


def test_a_web_address_says_how_to_colour_it(tmp_path, tiny_model_file):
    """A URL pasted from a browser is named as given (it was 'https:/...: no such file') with
    a way to colour it; the other inputs are coloured."""
    photo = write_portrait(tmp_path / "a.png", 40, 40, seed=1, gray=True)
    url = "https://example.com/old photo.jpg"
    result = run_cli("colorize", url, str(photo), "-m", str(tiny_model_file))
    assert result.returncode == 1 and result.stdout.decode().split() == [str(tmp_path / "a_color.png")]
    assert result.stderr.decode().splitlines() == [
        f"portraitcolor: {url}: a web address: colorize reads files (download it first, or: curl -sL '{url}' | portraitcolor colorize - -o photo_color.jpg)"
    ]


def test_an_output_folder_that_is_a_file_is_named(tmp_path, tiny_model_file):
    photo = write_portrait(tmp_path / "a.png", 40, 40, seed=1, gray=True)
    (tmp_path / "b.jpg").write_bytes(b"a file of the user's")
    for folder in (tmp_path / "b.jpg", tmp_path / "b.jpg" / "sub"):
        result = run_cli("colorize", str(photo), "-O", str(folder), "-m", str(tiny_model_file))
        assert result.returncode == 1 and result.stderr.decode().strip() == (
            f"portraitcolor: {photo}: cannot create output folder {folder}: {tmp_path / 'b.jpg'} is a file"
        )
    assert (tmp_path / "b.jpg").read_bytes() == b"a file of the user's"
