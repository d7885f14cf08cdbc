"""Make realistic calibration and validation data for the field corpus, the way each package preprocesses.

    python benchmarks/field/make_data.py [--cache ~/.cache/spinal/field] [--seed 0]

Needs Pillow, numpy, scipy and onnxruntime (a small venv of its own; see the Makefile's `field` target), the
Debian fonts (fonts-dejavu-core, fonts-liberation2, fonts-noto-cjk) and espeak-ng. Writes
CACHE/data/<model stem>/calib.npz and val.npz, keyed by input name (validation: held-out texts, fonts, voices).

OCR (rapidocr / PaddleOCR, BGR, (x/255 - 0.5)/0.5, NCHW): det: pages with lines of text; rec: a cropped line
resized to height 48 and padded to width 320; cls: a line at 48 x 192, upright or rotated 180 deg (`labels`).
openwakeword 0.4: espeak-ng speech at 16 kHz with noise, int16; mel = melspectrogram.onnx(int16 as float) / 10 + 2;
embedding windows of 76 mel frames (step 8); each head sees its last N embeddings (the wake words spoken for
the heads, other speech and noise for the negatives); silero VAD: 640-sample frames / 32767 with the LSTM state
the package carries from frame to frame.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from spec import SPEC, WAKE_WORDS

FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
         "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
         "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf",
         "/usr/share/fonts/truetype/liberation2/LiberationMono-Regular.ttf",
         "/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf"]
CJK_FONTS = ["/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"]
WORDS = ["invoice", "total", "amount", "date", "receipt", "order", "number", "customer", "address", "street",
         "city", "phone", "email", "price", "quantity", "item", "tax", "discount", "shipping", "payment", "card",
         "cash", "change", "thank", "you", "welcome", "store", "open", "close", "monday", "friday", "january",
         "march", "july", "december", "north", "south", "station", "platform", "exit", "entrance", "warning",
         "caution", "danger", "speed", "limit", "parking", "only", "hospital", "school", "library", "museum",
         "coffee", "tea", "milk", "bread"]
CJK = ["发票号码", "合计金额", "开具日期", "北京市朝阳区", "欢迎光临", "谢谢惠顾", "营业时间", "禁止吸烟", "出口",
       "地铁站", "价格", "数量", "电话号码", "上海", "人民币", "收据", "会员卡", "打折"]


def text_line(rng: np.random.Generator) -> tuple[str, bool]:
    r = rng.random()
    if r < 0.2:
        return "".join(rng.choice(CJK, size=rng.integers(1, 3))), True
    if r < 0.35:
        return f"{rng.integers(1, 9999)}.{rng.integers(0, 99):02d}", False
    words = list(rng.choice(WORDS, size=rng.integers(1, 4)))
    if rng.random() < 0.3:
        words.append(str(rng.integers(1, 2027)))
    s = " ".join(words)
    return (s.upper() if rng.random() < 0.2 else s.capitalize() if rng.random() < 0.5 else s), False


def render_line(rng: np.random.Generator, fonts: list[str], cjk: list[str]):
    """One cropped text line (RGB uint8), as a detector's box crop would look."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
    text, is_cjk = text_line(rng)
    size = int(rng.integers(24, 44))
    font = ImageFont.truetype(str(rng.choice(cjk if is_cjk else fonts)), size)
    bg = tuple(int(v) for v in rng.integers(180, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 90, 3))
    box = font.getbbox(text)
    pad = int(rng.integers(2, 8))
    w, h = box[2] - box[0] + 2 * pad, box[3] - box[1] + 2 * pad
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((pad - box[0], pad - box[1]), text, font=font, fill=fg)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    a = np.asarray(img).astype(np.float32) + rng.normal(0, rng.uniform(0, 6), (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8), text


def resize_norm(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """rapidocr's resize_norm_img: keep the aspect ratio up to `width`, (x/255-0.5)/0.5, pad with 0, CHW, BGR."""
    from PIL import Image
    h, w = img.shape[:2]
    rw = min(width, int(np.ceil(height * w / h)))
    r = np.asarray(Image.fromarray(img).resize((rw, height), Image.BILINEAR)).astype(np.float32)
    r = r[:, :, ::-1].transpose(2, 0, 1) / 255.0
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :rw] = (r - 0.5) / 0.5
    return out


def ocr_rec(rng, fonts, cjk, n: int, height=48, width=320):
    x = np.stack([resize_norm(render_line(rng, fonts, cjk)[0], height, width) for _ in range(n)])
    return {"x": x}


def ocr_cls(rng, fonts, cjk, n: int):
    xs, labels = [], []
    for i in range(n):
        img = render_line(rng, fonts, cjk)[0]
        flip = i % 2
        if flip:
            img = img[::-1, ::-1]
        xs.append(resize_norm(np.ascontiguousarray(img), 48, 192))
        labels.append(flip)
    return {"x": np.stack(xs), "labels": np.array(labels, np.int64)}


def ocr_det(rng, fonts, cjk, n: int, height=320, width=480):
    from PIL import Image, ImageDraw, ImageFont
    xs = []
    for _ in range(n):
        bg = tuple(int(v) for v in rng.integers(170, 256, 3))
        img = Image.new("RGB", (width, height), bg)
        d = ImageDraw.Draw(img)
        y = int(rng.integers(4, 30))
        while y < height - 20:
            text, is_cjk = text_line(rng)
            size = int(rng.integers(14, 34))
            font = ImageFont.truetype(str(rng.choice(cjk if is_cjk else fonts)), size)
            x0 = int(rng.integers(4, width // 3))
            d.text((x0, y), text, font=font, fill=tuple(int(v) for v in rng.integers(0, 90, 3)))
            y += int(size * rng.uniform(1.3, 2.6))
        a = np.asarray(img).astype(np.float32) + rng.normal(0, rng.uniform(0, 5), (height, width, 3))
        a = np.clip(a, 0, 255)[:, :, ::-1].transpose(2, 0, 1) / 255.0
        xs.append(((a - 0.5) / 0.5).astype(np.float32))
    return {"x": np.stack(xs)}


# ---------------------------------------------------------------- speech
VOICES = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us+f2", "en-gb+f3", "en-us+m3",
          "en-gb-x-gbclan", "en-us-nyc", "en-gb+f4", "en-us+m7"]
NEGATIVE = ["the meeting is moved to thursday afternoon", "please pass me the salt", "turn left at the next light",
            "i think it will rain later", "my phone battery is almost empty", "can you open the window",
            "we need more milk and eggs", "the train leaves at seven", "this coffee is too hot",
            "call me when you get home", "hey there how are you", "alexander bought a new car",
            "jar of honey on the shelf", "marvelous work everyone", "my craft project is done",
            "whether or not we go", "the timer on the oven", "set the table for dinner"]


def speak(text: str, voice: str, speed: int, pitch: int, tmp: Path) -> np.ndarray:
    from scipy.io import wavfile
    from scipy.signal import resample_poly
    wav = tmp / "s.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text],
                   check=True, capture_output=True)
    sr, a = wavfile.read(wav)
    a = a.astype(np.float32) / 32768
    if sr != 16000:
        g = np.gcd(sr, 16000)
        a = resample_poly(a, 16000 // g, sr // g).astype(np.float32)
    return a


def clip(rng, speech: np.ndarray | None, seconds: float = 4.0) -> np.ndarray:
    """speech placed to end 0.1-0.6 s before the end, noise (white + brown) at 5-30 dB SNR, int16."""
    n = int(seconds * 16000)
    out = np.zeros(n, np.float32)
    level = rng.uniform(0.15, 0.6)
    if speech is not None:
        speech = speech[-n + 1600:]
        end = n - int(rng.uniform(0.1, 0.6) * 16000)
        out[end - len(speech):end] = speech / (np.abs(speech).max() + 1e-9) * level
    white = rng.normal(0, 1, n).astype(np.float32)
    brown = np.cumsum(rng.normal(0, 1, n)).astype(np.float32)
    brown -= np.convolve(brown, np.ones(801) / 801, mode="same")
    noise = white / white.std() * rng.uniform(0.2, 1) + brown / (brown.std() + 1e-9)
    ref = np.sqrt(np.mean(out ** 2)) if speech is not None else level / 4
    snr = rng.uniform(5, 30)
    out += noise / noise.std() * ref / (10 ** (snr / 20))
    return (np.clip(out, -1, 1) * 32767).astype(np.int16)


class Features:
    """openwakeword.utils.AudioFeatures with the original ONNX files (batch mode, as its training code does)."""

    def __init__(self, models: Path):
        import onnxruntime as ort
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        self.mel = ort.InferenceSession(str(models / "melspectrogram.onnx"), o, providers=["CPUExecutionProvider"])
        self.emb = ort.InferenceSession(str(models / "embedding_model.onnx"), o, providers=["CPUExecutionProvider"])

    def melspec(self, x: np.ndarray) -> np.ndarray:
        return np.squeeze(self.mel.run(None, {"input": x[None].astype(np.float32)})[0]) / 10 + 2

    def embeddings(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        spec = self.melspec(x)
        wins = np.stack([spec[i:i + 76] for i in range(0, spec.shape[0] - 75, 8)])[..., None].astype(np.float32)
        return wins, self.emb.run(None, {"input_1": wins})[0].squeeze(axis=(1, 2))


def speech_sets(rng, models: Path, tmp: Path) -> dict:
    """clips per phrase group: {'neg': [...], head file: [...]}, half of the voices held out for validation."""
    feats = Features(models)
    out: dict[str, dict[str, list]] = {}
    groups = {"neg": NEGATIVE, **WAKE_WORDS}
    for g, phrases in groups.items():
        for split, voices in (("calib", VOICES[0::2]), ("val", VOICES[1::2])):
            items = []
            reps = 2 if g != "neg" else 1
            for p in phrases:
                for v in voices:
                    for _ in range(reps if len(phrases) < 3 else 1):
                        s = speak(p, v, int(rng.integers(130, 200)), int(rng.integers(30, 70)), tmp)
                        a = clip(rng, s)
                        wins, emb = feats.embeddings(a)
                        items.append({"audio": a, "mel_windows": wins, "emb": emb, "label": g})
            if g == "neg":
                for _ in range(len(voices)):
                    a = clip(rng, None)
                    wins, emb = feats.embeddings(a)
                    items.append({"audio": a, "mel_windows": wins, "emb": emb, "label": "noise"})
            out.setdefault(g, {})[split] = items
            print(f"  speech {g} {split}: {len(items)} clips", flush=True)
    return out


def take(rng, arr: np.ndarray, n: int) -> np.ndarray:
    return arr[np.sort(rng.choice(len(arr), size=min(n, len(arr)), replace=False))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "spinal" / "field")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=128, help="samples per split (det: a quarter)")
    a = ap.parse_args()
    cache = a.cache.expanduser()
    rng = np.random.default_rng(a.seed)
    files = {p.name: p for p in (cache / "models").rglob("*.onnx")}
    data = cache / "data"

    def write(stem: str, calib: dict, val: dict) -> None:
        (data / stem).mkdir(parents=True, exist_ok=True)
        np.savez(data / stem / "calib.npz", **calib)
        np.savez(data / stem / "val.npz", **val)
        print(stem, {k: v.shape for k, v in val.items()}, flush=True)

    # OCR: calibration fonts and validation fonts differ (held-out typefaces)
    cal_f, val_f = FONTS[0::2], FONTS[1::2]
    makers = {"ocr_rec": lambda f, c, n: ocr_rec(rng, f, c, n), "ocr_cls": lambda f, c, n: ocr_cls(rng, f, c, n),
              "ocr_det": lambda f, c, n: ocr_det(rng, f, c, max(8, n // 4))}
    made: dict[str, tuple] = {}
    for name, spec in SPEC.items():
        kind = spec["data"]
        if kind in makers and name in files:
            if kind not in made:
                made[kind] = (makers[kind](cal_f, CJK_FONTS[:1], a.n), makers[kind](val_f, CJK_FONTS[1:], a.n))
            write(Path(name).stem, *made[kind])

    tmp_dir = tempfile.TemporaryDirectory()
    tmp = Path(tmp_dir.name)
    models = files["melspectrogram.onnx"].parent
    sets = speech_sets(rng, models, tmp)
    allclips = {s: [it for g in sets.values() for it in g[s]] for s in ("calib", "val")}

    # melspectrogram: 1760-sample streaming chunks (as float of the int16 values)
    def mel_in(items, n):
        chunks = [it["audio"][i:i + 1760] for it in items for i in range(0, len(it["audio"]) - 1760, 1280)]
        return {"input": take(rng, np.stack(chunks).astype(np.float32), n)}
    write("melspectrogram", mel_in(allclips["calib"], a.n), mel_in(allclips["val"], a.n))

    def emb_in(items, n):
        return {"input_1": take(rng, np.concatenate([it["mel_windows"] for it in items]), n)}
    write("embedding_model", emb_in(allclips["calib"], a.n), emb_in(allclips["val"], a.n))

    # heads: windows of the last N embeddings, sliding (stride 2) over positives, negatives and noise
    for name in WAKE_WORDS:
        if name not in files:
            continue
        import onnxruntime as ort
        sess = ort.InferenceSession(str(files[name]), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        nf = int(inp.shape[1])

        def head_in(split, n, name=name, nf=nf, inp=inp, sess=sess):
            pos = [w for it in sets[name][split] for w in windows(it["emb"], nf)]
            neg = [w for it in sets["neg"][split] for w in windows(it["emb"], nf)]
            # every window that ends with the phrase, plus as many negatives (the phrase half-spoken included)
            p = np.stack(pos)
            q = take(rng, np.stack(neg), max(len(p), n // 2))
            x = np.concatenate([take(rng, p, n // 2), take(rng, q, n - min(len(p), n // 2))]).astype(np.float32)
            if split == "calib" and not fired(sess, inp.name, x):
                events = more_events(name, Features(models), tmp, a.seed, nf, sess, inp.name)
                print(f"  {name} calib: the phrase never fired the head; {len(events)} windows that do added "
                      "from more renditions", flush=True)
                x = np.concatenate([events, x[len(events):]]).astype(np.float32) if len(events) else x
            return {inp.name: x}
        write(Path(name).stem, head_in("calib", a.n), head_in("val", a.n))

    # silero VAD: frames of 640 samples with the LSTM state carried along, as openwakeword.VAD does
    if "silero_vad.onnx" in files:
        import onnxruntime as ort
        vad = ort.InferenceSession(str(files["silero_vad.onnx"]), providers=["CPUExecutionProvider"])

        def vad_in(items, n):
            rows = {"input": [], "h": [], "c": []}
            for it in items:
                h = np.zeros((2, 1, 64), np.float32)
                c = np.zeros((2, 1, 64), np.float32)
                x = it["audio"]
                for i in range(0, len(x) - 640 + 1, 640):
                    f = (x[i:i + 640] / 32767).astype(np.float32)[None]
                    rows["input"].append(f)
                    rows["h"].append(h)
                    rows["c"].append(c)
                    _, h, c = vad.run(None, {"input": f, "h": h, "c": c, "sr": np.array(16000, np.int64)})
            idx = np.sort(rng.choice(len(rows["input"]), size=min(n, len(rows["input"])), replace=False))
            # one row per sample: the batch axis of each input is its first axis (h, c: axis 1 -> moved first)
            return {"input": np.concatenate([rows["input"][i] for i in idx]),
                    "h": np.stack([rows["h"][i] for i in idx]), "c": np.stack([rows["c"][i] for i in idx]),
                    "sr": np.full(len(idx), 16000, np.int64)}
        write("silero_vad", vad_in(allclips["calib"], a.n), vad_in(allclips["val"], a.n))
    tmp_dir.cleanup()


def fired(sess, name: str, x: np.ndarray, threshold: float = 0.5) -> list[int]:
    """Indices of the windows on which the original head scores above the threshold."""
    return [i for i in range(len(x)) if float(sess.run(None, {name: x[i:i + 1]})[0].max()) > threshold]


def more_events(head: str, feats, tmp: Path, seed: int, nf: int, sess, name: str, want: int = 8,
                tries: int = 60) -> np.ndarray:
    """Windows that fire the head, from more renditions of its phrase by the calibration voices (other speeds
    and pitches): what a user does when `spinal convert` notes that the calibration data never reaches the
    threshold (int8 ranges fitted to it cannot hold a detection). Its own generator, so that the other
    models' data stay as they were."""
    rng = np.random.default_rng([seed, 14])
    voices, phrases = VOICES[0::2], WAKE_WORDS[head]
    found: list[np.ndarray] = []
    for k in range(tries):
        s = speak(phrases[k % len(phrases)], voices[k % len(voices)], int(rng.integers(110, 230)),
                  int(rng.integers(10, 90)), tmp)
        _, emb = feats.embeddings(clip(rng, s))
        wins = np.stack(windows(emb, nf)).astype(np.float32)
        found += [wins[i] for i in fired(sess, name, wins)]
        if len(found) >= want:
            break
    return np.stack(found[:want]) if found else np.zeros((0,), np.float32)


def windows(emb: np.ndarray, nf: int, stride: int = 2) -> list[np.ndarray]:
    """the last-N-embeddings inputs a streaming head sees, ending in the clip's second half (the phrase)."""
    ends = range(max(nf, emb.shape[0] // 2), emb.shape[0] + 1, stride)
    return [emb[e - nf:e] for e in ends]


if __name__ == "__main__":
    main()
