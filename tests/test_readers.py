"""Readers: robust image decoding, Open Clip Art SVG keywords, MIR Flickr archives, a user's photo folder."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from tagan.errors import UserError
from tagan.readers.folder import read_folder
from tagan.readers.images import ImageError, load_image
from tagan.readers.mirflickr import prepare, read_mirflickr, safe_extract
from tagan.readers.openclipart import read_openclipart
from tests.helpers import system_tool
from tests.photo_fixtures import make_avif, make_dng, make_heic, picture

XMP = """<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>
{items}</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"""


def xmp(*words: str) -> str:
    return XMP.format(items="".join(f"<rdf:li>{w}</rdf:li>" for w in words))


def svg(*words: str) -> str:
    items = "".join(f"<rdf:li>{w}</rdf:li>" for w in words)
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://creativecommons.org/ns#"><metadata>'
        f"<rdf:RDF><cc:Work><dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject></cc:Work></rdf:RDF>"
        "</metadata></svg>"
    )


# ---------------------------------------------------------------- images


def test_rgba_is_flattened_on_white(tmp_path: Path) -> None:
    a = np.zeros((8, 8, 4), np.uint8)
    a[:4] = (255, 0, 0, 255)  # top half opaque red, bottom half fully transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    im = load_image(tmp_path / "a.png", 64)
    assert im.mode == "RGB"
    assert im.getpixel((0, 0)) == (255, 0, 0)
    assert im.getpixel((0, 7)) == (255, 255, 255)


def test_palette_with_transparency_and_la_and_grayscale(tmp_path: Path) -> None:
    p = Image.new("P", (6, 6), 1)
    p.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    p.info["transparency"] = 1
    p.save(tmp_path / "p.png", transparency=1)
    assert load_image(tmp_path / "p.png", 64).getpixel((0, 0)) == (255, 255, 255)
    Image.new("LA", (5, 5), (0, 0)).save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png", 64).getpixel((2, 2)) == (255, 255, 255)
    Image.new("L", (5, 5), 100).save(tmp_path / "l.jpg")
    im = load_image(tmp_path / "l.jpg", 64)
    assert im.mode == "RGB" and abs(im.getpixel((2, 2))[0] - 100) <= 2


def test_cmyk_jpeg_converts_to_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # red in CMYK
    r, g, b = load_image(tmp_path / "c.jpg", 64).getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    a = np.full((6, 6), 32768, np.uint16)  # mid grey in 16 bits
    Image.fromarray(a).save(tmp_path / "g16.png")
    v = load_image(tmp_path / "g16.png", 64).getpixel((3, 3))
    assert v[0] == v[1] == v[2] and 120 <= v[0] <= 135


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    im.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "r.jpg", 64).size == (20, 40)


def test_large_jpeg_is_decoded_at_reduced_size(tmp_path: Path) -> None:
    Image.new("RGB", (2000, 1000), (10, 200, 10)).save(tmp_path / "big.jpg")
    im = load_image(tmp_path / "big.jpg", 256)
    assert max(im.size) <= 256 and im.size[0] == 2 * im.size[1]


def test_bad_files_raise_image_error_with_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not an image\n")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "PNG")
    (tmp_path / "trunc.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "JPEG")
    (tmp_path / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.new("L", (300, 300)).save(tmp_path / "huge.png")
    cases = {
        "empty.jpg": "empty",
        "text.jpg": "not an image",
        "trunc.png": "truncated",
        "trunc.jpg": "truncated",
        "missing.png": "cannot read",
    }
    for name, reason in cases.items():
        with pytest.raises(ImageError) as e:
            load_image(tmp_path / name, 64)
        assert reason in e.value.reason, (name, e.value.reason)
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(tmp_path / "huge.png", 64, max_pixels=10_000)


def _close(a: Image.Image, b: np.ndarray) -> float:
    """Mean absolute difference of two RGB pictures of the same size (0..255)."""
    return float(np.abs(np.asarray(a, np.float32) - b.astype(np.float32)).mean())


def test_heic_and_avif_decode(tmp_path: Path) -> None:
    rgb = picture()
    for path in (make_heic(tmp_path / "phone.HEIC", rgb), make_avif(tmp_path / "web.avif", rgb)):
        im = load_image(path, 320)
        assert im.size == (160, 120) and im.mode == "RGB" and _close(im, rgb) < 8, path


def test_raw_is_read_through_its_embedded_preview(tmp_path: Path) -> None:
    rgb = picture(seed=1)
    im = load_image(make_dng(tmp_path / "IMG_1.DNG", rgb), 320)
    assert im.size == (160, 120) and _close(im, rgb) < 8  # the preview, not the 64x48 Bayer data
    rotated = load_image(make_dng(tmp_path / "r.dng", rgb, orientation=6), 320)
    assert rotated.size == (120, 160)  # the RAW's orientation applied to its preview
    assert _close(rotated, np.rot90(rgb, k=-1)) < 8
    bare = load_image(make_dng(tmp_path / "bare.dng", rgb, preview=False), 320)
    assert bare.size == (32, 24)  # no preview: LibRaw demosaics the raw data at half size
    (tmp_path / "jpeg.CR2").write_bytes(_jpeg_bytes(rgb))
    assert load_image(tmp_path / "jpeg.CR2", 320).size == (160, 120)  # a JPEG named .CR2: read by content
    for name, data, reason in (
        ("noise.NEF", np.random.default_rng(0).bytes(4096), "not an image or RAW"),
        ("cut.dng", (tmp_path / "IMG_1.DNG").read_bytes()[:600], "not an image or RAW"),
    ):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=reason):
            load_image(tmp_path / name, 320)


def _jpeg_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG")
    return buf.getvalue()


def test_exiftool_reads_the_test_dng(tmp_path: Path) -> None:
    import subprocess

    path = make_dng(tmp_path / "IMG_2.DNG", picture(seed=2))
    out = subprocess.run(
        [system_tool("exiftool"), "-b", "-PreviewImage", str(path)], capture_output=True, check=True
    )
    assert Image.open(io.BytesIO(out.stdout)).size == (160, 120)  # a valid DNG to another reader too


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    import os
    import signal
    import socket

    os.mkfifo(tmp_path / "fifo.jpg")  # opening it for reading would wait for a writer forever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock.jpg"))
    os.symlink("/dev/zero", tmp_path / "zero.jpg")  # an endless character device
    os.symlink("fifo.jpg", tmp_path / "link.jpg")
    os.mkdir(tmp_path / "dir.jpg")
    (tmp_path / "photo.jxl").write_bytes(b"\xff\x0a rest")
    cases = {"fifo.jpg": "FIFO", "sock.jpg": "socket", "zero.jpg": "character device", "link.jpg": "FIFO",
             "dir.jpg": "folder", "photo.jxl": "unsupported format"}  # fmt: skip
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("load_image blocked"))
    try:
        for name, reason in cases.items():
            signal.alarm(10)
            with pytest.raises(ImageError, match=reason):
                load_image(tmp_path / name, 64)
            signal.alarm(0)
    finally:
        signal.alarm(0)
        sock.close()


# ---------------------------------------------------------------- openclipart


def test_openclipart_reads_keywords_png_twin_and_drops_duplicates(tmp_path: Path) -> None:
    svg_root, png_root = tmp_path / "svg", tmp_path / "png"
    files = {
        "animals/cat.svg": svg("Cat", "pet animal"),
        "animals/mammals/cat.svg": svg("cat"),  # same PNG bytes as animals/cat: a duplicate copy
        "food/apple.svg": svg("apple", ""),
        "food/nopng.svg": svg("pear"),
        "food/broken.svg": "<svg><metadata>",
    }
    for rel, text in files.items():
        (svg_root / rel).parent.mkdir(parents=True, exist_ok=True)
        (svg_root / rel).write_text(text)
    for rel, colour in [
        ("animals/cat", 1),
        ("animals/mammals/cat", 1),
        ("food/apple", 2),
        ("food/broken", 3),
    ]:
        (png_root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (4, 4), colour).save((png_root / rel).with_suffix(".png"))
    items = list(read_openclipart(svg_root, png_root))
    assert [(i.id, i.group, i.tags) for i in items] == [
        ("animals/cat", "animals", ["Cat", "pet animal"]),
        ("food/apple", "food", ["apple", ""]),
    ]
    assert items[0].path == png_root / "animals/cat.png"
    with pytest.raises(UserError, match="apt-get install"):
        list(read_openclipart(tmp_path / "nowhere", png_root))


# ---------------------------------------------------------------- mirflickr


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "JPEG")
    return buf.getvalue()


def test_mirflickr_miniature_archive_end_to_end(tmp_path: Path) -> None:
    images = _zip(
        tmp_path / "mirflickr25k.zip",
        {
            **{f"mirflickr/im{n}.jpg": _jpeg() for n in (1, 2, 3, 4)},
            "mirflickr/meta/tags/tags1.txt": b"sky\nclouds\n",
            "mirflickr/meta/tags/tags2.txt": b"",
            "mirflickr/meta/tags/tags3.txt": b"",
            "mirflickr/meta/tags/tags4.txt": b"dog\n",
            "mirflickr/meta/tags_raw/tags1.txt": b"Sky!\n",
        },
    )
    ann = _zip(
        tmp_path / "mirflickr25k_annotations_v080.zip",
        {"README.txt": b"concepts", "animals.txt": b"4\n", "animals_r1.txt": b"4\n", "clouds.txt": b"1\n2\n"},
    )
    md5 = {p: hashlib.md5(p.read_bytes()).hexdigest() for p in (images, ann)}
    root = prepare(
        tmp_path / "raw",
        images=(images.as_uri(), md5[images]),
        annotations=(ann.as_uri(), md5[ann]),
    )
    got = {i.id: i.tags for i in read_mirflickr(root)}
    assert got == {"im1": ["sky", "clouds"], "im2": ["clouds"], "im4": ["dog", "animals"]}  # im3 untagged
    assert all(i.group == i.id for i in read_mirflickr(root))


def test_mirflickr_wrong_md5_fails_clearly(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"mirflickr/im1.jpg": _jpeg()})
    with pytest.raises(UserError, match="MD5 mismatch.*delete the file"):
        prepare(tmp_path / "raw", images=(archive.as_uri(), "0" * 32), annotations=(archive.as_uri(), ""))


@pytest.mark.parametrize(
    "evil", ["../evil.txt", "mirflickr/../../evil.txt", "/tmp/abs_evil.txt", "C:/evil.txt"]
)
def test_safe_extract_rejects_escaping_entries(tmp_path: Path, evil: str) -> None:
    archive = _zip(tmp_path / "evil.zip", {"mirflickr/ok.txt": b"ok", evil: b"pwned"})
    target = tmp_path / "out" / "x"
    with pytest.raises(UserError, match="unsafe archive entry"):
        safe_extract(archive, target)
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (target / "mirflickr" / "ok.txt").exists()  # rejected before anything is written


# ---------------------------------------------------------------- folder


def test_folder_tags_from_sidecars_embedded_xmp_and_csv(tmp_path: Path) -> None:
    (tmp_path / "trip").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "trip" / "a.jpg")
    (tmp_path / "trip" / "a.jpg.xmp").write_text(xmp("beach", "sea"))  # NAME.EXT.xmp
    Image.new("RGB", (8, 8)).save(tmp_path / "trip" / "b.jpg")
    (tmp_path / "trip" / "b.xmp").write_text(xmp("mountain"))  # NAME.xmp (Lightroom)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp("cat", "sofa"))
    Image.new("RGB", (8, 8)).save(tmp_path / "c.png", pnginfo=info)  # embedded XMP packet
    Image.new("RGB", (8, 8)).save(tmp_path / "d.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "e.jpg")  # no tags anywhere
    (tmp_path / "tags.csv").write_text("path,tags\nd.jpg,red car; street\n")
    (tmp_path / ".hidden").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".hidden" / "x.jpg")
    got = {(i.id, i.group): i.tags for i in read_folder(tmp_path)}
    assert got == {
        ("c.png", "."): ["cat", "sofa"],
        ("d.jpg", "."): ["red car", "street"],
        ("e.jpg", "."): [],
        ("trip/a.jpg", "trip"): ["beach", "sea"],
        ("trip/b.jpg", "trip"): ["mountain"],
    }
    with pytest.raises(UserError, match="not found"):
        list(read_folder(tmp_path / "nope"))
