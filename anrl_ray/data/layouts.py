"""Raw FAS dataset layouts: file-name parsers and split rules.

One parser per dataset takes a path relative to the dataset root (the last part is a video
file, or a folder of its frames) and returns :class:`VideoMeta` (video, subject, attack type,
split) or raises :class:`NameMismatch`. The video converters (:mod:`anrl_ray.data.converters`)
apply them to video files, the reference-list importer (:mod:`anrl_ray.data.tface`) to the
folders of listed frames.

Layouts followed (from the datasets' documentation and the loaders of public code that
reads the original releases: SSDG's ``data_label/generate_label.py``, Idiap's
``bob.db.casia_fasd`` / ``bob.db.replay``, Tencent/TFace ``DG_dataset.py``):

OULU-NPU  ``ROOT/{Train_files,Dev_files,Test_files}/P_S_UU_F.avi`` -- Phone 1-6,
    Session 1-3, User 01-55, File (access type) 1 = live, 2-3 = print, 4-5 = display
    (replay). The split is the folder. The ``.txt`` eye-position files beside the videos
    are ignored.
CASIA-FASD  ``ROOT/{train_release,test_release}/<subject>/<video>.avi`` -- 1, 2, HR_1 live;
    3, 4, HR_2 warped printed photo (``print``); 5, 6, HR_3 printed photo with cut eyes
    (``cut``); 7, 8, HR_4 video replay (``replay``) (bob.db.casia_fasd's mapping). Subject
    folders restart at 1 in each release, so subjects are named ``train_release/7``. There
    is no dev split: the last ``round(dev_fraction * n)`` train subjects in numeric order
    become dev (0.25 of the 20 gives subjects 16-20, bob's "grandtest" dev set); the list is
    recorded in the manifest's ``converter_args``.
Replay-Attack (Idiap)  ``ROOT/{train,devel,test}/real/client001_session01_webcam_authenticate_
    {adverse,controlled}_N.mov`` and ``ROOT/{train,devel,test}/attack/{fixed,hand}/attack_
    {print,highdef,mobile}_client001_session01_{highdef,mobile}_{photo,video}_{adverse,
    controlled}.mov``: ``print`` -> print; ``highdef``/``mobile`` (a photo or video shown on a
    screen) -> replay. ``devel`` -> dev. ``enroll/`` and ``face-locations/`` are not read.
    Fixed and hand-held attacks share file names, so video ids keep the folder.
MSU-MFSD  ``ROOT/scene01/real/real_client001_{android,laptop}_SD_scene01.{mp4,mov}`` and
    ``ROOT/scene01/attack/attack_client001_{android,laptop}_SD_{ipad_video,iphone_video,
    printed_photo}_scene01.{mp4,mov}``; ``ROOT/train_sub_list.txt`` / ``ROOT/test_sub_list.txt``
    list the client numbers of each split. ``printed_photo`` -> print, ``*_video`` -> replay.
    Dev = the last ``round(dev_fraction * n)`` train clients in numeric order (recorded).

Video ids are the video's path relative to ROOT without its extension (the reference code
groups frames into videos the same way: by their folder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from anrl_ray import LIVE, SPOOF
from anrl_ray.errors import UserError

VIDEO_EXTENSIONS = (".avi", ".mov", ".mp4", ".m4v", ".mkv", ".wmv", ".mpg", ".mpeg", ".3gp", ".webm")


class NameMismatch(ValueError):
    """A path that does not fit the dataset's naming pattern (the message says why)."""


@dataclass(frozen=True)
class VideoMeta:
    """What a dataset's naming tells about one video."""

    rel_path: str  # path relative to the dataset root, POSIX separators
    video_id: str  # rel_path without the video extension
    subject_id: str
    attack_type: str  # one of format.ATTACK_TYPES
    split: str | None  # "train" | "dev" | "test"; None when a subject list decides (MSU)

    @property
    def label(self) -> int:
        return LIVE if self.attack_type == "live" else SPOOF


def _video_id(rel: PurePosixPath) -> str:
    return str(rel.with_suffix("")) if rel.suffix.lower() in VIDEO_EXTENSIONS else str(rel)


def _stem(rel: PurePosixPath) -> str:
    return rel.stem if rel.suffix.lower() in VIDEO_EXTENSIONS else rel.name


# ----------------------------------------------------------------------------------------
# Naming patterns, one parser per dataset.

_OULU_SPLITS = {"Train_files": "train", "Dev_files": "dev", "Test_files": "test"}
_OULU_NAME = re.compile(r"^([1-6])_([1-3])_(\d{2})_([1-5])$")
_OULU_ATTACK = {1: "live", 2: "print", 3: "print", 4: "replay", 5: "replay"}


def parse_oulu(rel: PurePosixPath) -> VideoMeta:
    """``{Train,Dev,Test}_files/Phone_Session_User_File.avi`` (File 1 live, 2-3 print, 4-5 replay)."""
    if len(rel.parts) != 2 or rel.parts[0] not in _OULU_SPLITS:
        raise NameMismatch(f"expected {'|'.join(_OULU_SPLITS)}/P_S_UU_F.avi, got {rel}")
    m = _OULU_NAME.match(_stem(rel))
    if not m:
        raise NameMismatch("name is not Phone(1-6)_Session(1-3)_User(2 digits)_File(1-5), e.g. 1_1_01_1.avi")
    return VideoMeta(str(rel), _video_id(rel), m.group(3), _OULU_ATTACK[int(m.group(4))], _OULU_SPLITS[rel.parts[0]])


_CASIA_SPLITS = {"train_release": "train", "test_release": "test"}
_CASIA_ATTACK = {
    **dict.fromkeys(("1", "2", "HR_1"), "live"),
    **dict.fromkeys(("3", "4", "HR_2"), "print"),  # warped printed photo
    **dict.fromkeys(("5", "6", "HR_3"), "cut"),  # printed photo with the eyes cut out
    **dict.fromkeys(("7", "8", "HR_4"), "replay"),  # video on a screen
}


def parse_casia(rel: PurePosixPath) -> VideoMeta:
    """``{train,test}_release/<subject>/<1-8|HR_1-HR_4>.avi``; split "train" before the dev carve."""
    if len(rel.parts) != 3 or rel.parts[0] not in _CASIA_SPLITS:
        raise NameMismatch(f"expected train_release|test_release/<subject>/<video>.avi, got {rel}")
    if not rel.parts[1].isdigit():
        raise NameMismatch(f"subject folder {rel.parts[1]!r} is not a number")
    attack = _CASIA_ATTACK.get(_stem(rel))
    if attack is None:
        raise NameMismatch(f"video name {_stem(rel)!r} is not one of {sorted(_CASIA_ATTACK)}")
    subject = f"{rel.parts[0]}/{int(rel.parts[1])}"
    return VideoMeta(str(rel), _video_id(rel), subject, attack, _CASIA_SPLITS[rel.parts[0]])


_REPLAY_SPLITS = {"train": "train", "devel": "dev", "test": "test"}
_REPLAY_REAL = re.compile(r"^client(\d+)_session(\d+)_webcam_authenticate_(adverse|controlled)_(\d+)$")
_REPLAY_ATTACK = re.compile(
    r"^attack_(print|highdef|mobile)_client(\d+)_session(\d+)_(highdef|mobile)_(photo|video)_(adverse|controlled)$"
)


def parse_replay(rel: PurePosixPath) -> VideoMeta:
    """``{train,devel,test}/real/client...mov`` or ``.../attack/{fixed,hand}/attack_<medium>_client...mov``."""
    parts = rel.parts
    if not parts or parts[0] not in _REPLAY_SPLITS:
        raise NameMismatch(f"expected train|devel|test/..., got {rel}")
    stem = _stem(rel)
    if len(parts) == 3 and parts[1] == "real":
        m = _REPLAY_REAL.match(stem)
        if not m:
            raise NameMismatch("real video name is not client<N>_session<N>_webcam_authenticate_<adverse|controlled>_<N>")
        return VideoMeta(str(rel), _video_id(rel), m.group(1), "live", _REPLAY_SPLITS[parts[0]])
    if len(parts) == 4 and parts[1] == "attack" and parts[2] in ("fixed", "hand"):
        m = _REPLAY_ATTACK.match(stem)
        if not m:
            raise NameMismatch(
                "attack video name is not attack_<print|highdef|mobile>_client<N>_session<N>_"
                "<highdef|mobile>_<photo|video>_<adverse|controlled>"
            )
        attack = "print" if m.group(1) == "print" else "replay"
        return VideoMeta(str(rel), _video_id(rel), m.group(2), attack, _REPLAY_SPLITS[parts[0]])
    raise NameMismatch(f"expected <split>/real/<name> or <split>/attack/{{fixed,hand}}/<name>, got {rel}")


_MSU_REAL = re.compile(r"^real_client(\d+)_(android|laptop)_(SD|HD)_(scene\d+)$")
_MSU_ATTACK = re.compile(r"^attack_client(\d+)_(android|laptop)_(SD|HD)_(ipad_video|iphone_video|printed_photo)_(scene\d+)$")


def parse_msu(rel: PurePosixPath) -> VideoMeta:
    """``scene01/{real,attack}/...``; split None (decided by train/test_sub_list.txt)."""
    parts = rel.parts
    if len(parts) != 3 or not parts[0].startswith("scene") or parts[1] not in ("real", "attack"):
        raise NameMismatch(f"expected scene01/real/<name> or scene01/attack/<name>, got {rel}")
    stem = _stem(rel)
    if parts[1] == "real":
        m = _MSU_REAL.match(stem)
        if not m:
            raise NameMismatch("real video name is not real_client<NNN>_<android|laptop>_SD_scene01")
        return VideoMeta(str(rel), _video_id(rel), f"{int(m.group(1)):03d}", "live", None)
    m = _MSU_ATTACK.match(stem)
    if not m:
        raise NameMismatch(
            "attack video name is not attack_client<NNN>_<android|laptop>_SD_<ipad_video|iphone_video|printed_photo>_scene01"
        )
    attack = "print" if m.group(4) == "printed_photo" else "replay"
    return VideoMeta(str(rel), _video_id(rel), f"{int(m.group(1)):03d}", attack, None)


@dataclass(frozen=True)
class Layout:
    """One raw dataset: where its videos live and how their names read."""

    name: str
    domain: str
    title: str
    split_dirs: tuple[str, ...]  # folders under ROOT that hold the videos
    parse: Callable[[PurePosixPath], VideoMeta]
    expected: str  # the layout in one line, for error messages


LAYOUTS: dict[str, Layout] = {
    "oulu": Layout(
        "oulu", "O", "OULU-NPU", ("Train_files", "Dev_files", "Test_files"), parse_oulu,
        "ROOT/{Train_files,Dev_files,Test_files}/<Phone>_<Session>_<User>_<File>.avi, e.g. Train_files/1_1_01_1.avi",
    ),
    "casia": Layout(
        "casia", "C", "CASIA-FASD", ("train_release", "test_release"), parse_casia,
        "ROOT/{train_release,test_release}/<subject>/{1..8,HR_1..HR_4}.avi, e.g. train_release/1/HR_1.avi",
    ),
    "replay": Layout(
        "replay", "I", "Idiap Replay-Attack", ("train", "devel", "test"), parse_replay,
        "ROOT/{train,devel,test}/real/client001_session01_webcam_authenticate_adverse_1.mov and "
        "ROOT/{train,devel,test}/attack/{fixed,hand}/attack_highdef_client001_session01_highdef_photo_adverse.mov",
    ),
    "msu": Layout(
        "msu", "M", "MSU-MFSD", ("scene01",), parse_msu,
        "ROOT/scene01/{real,attack}/real_client001_android_SD_scene01.mp4 ... plus "
        "ROOT/train_sub_list.txt and ROOT/test_sub_list.txt",
    ),
}
LAYOUT_OF_DOMAIN = {layout.domain: layout for layout in LAYOUTS.values()}


def scan(layout: Layout, root: Path) -> tuple[list[VideoMeta], list[tuple[str, str]]]:
    """Videos under ``root`` that fit ``layout``, and (path, reason) for those that do not.

    Only files with a video extension inside the layout's split folders are considered;
    annotation files next to them (``.txt``, ``.face``) are not videos and are skipped.
    """
    if not root.is_dir():
        raise UserError(f"--root {root} is not a folder; expected the {layout.title} layout: {layout.expected}")
    present = [d for d in layout.split_dirs if (root / d).is_dir()]
    if not present:
        raise UserError(
            f"--root {root} contains none of {', '.join(layout.split_dirs)}; expected the {layout.title} layout: "
            f"{layout.expected}"
        )
    metas, bad = [], []
    for d in present:
        for path in sorted((root / d).rglob("*")):
            if not path.is_file() or path.suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            rel = PurePosixPath(path.relative_to(root).as_posix())
            try:
                metas.append(layout.parse(rel))
            except NameMismatch as e:
                bad.append((str(rel), f"file name fits no {layout.title} pattern: {e}"))
    if not metas:
        raise UserError(
            f"no {layout.title} video found under {root} ({len(bad)} video files with other names, e.g. "
            f"{[b[0] for b in bad[:3]]}); expected: {layout.expected}"
        )
    return metas, bad


def _subject_number(subject: str) -> int:
    return int(re.findall(r"\d+", subject)[-1])


def carve_dev_subjects(subjects: Iterable[str], fraction: float) -> list[str]:
    """The last ``round(fraction * n)`` subjects in numeric order (at least 1, leaving 1 for train)."""
    ordered = sorted(set(subjects), key=_subject_number)
    if fraction <= 0 or len(ordered) < 2:
        return []
    k = min(max(1, round(fraction * len(ordered))), len(ordered) - 1)
    return ordered[-k:]


def read_subject_list(path: Path) -> set[int]:
    """Client numbers in an MSU ``*_sub_list.txt`` (any whitespace, with or without zero padding)."""
    return {int(n) for n in re.findall(r"\d+", path.read_text())}


def assign_splits(
    layout: Layout, root: Path, metas: list[VideoMeta], dev_fraction: float
) -> tuple[list[VideoMeta], list[tuple[str, str]], dict]:
    """Final train/dev/test of every video, failures for videos of no split, and what was decided."""
    info: dict = {}
    bad: list[tuple[str, str]] = []
    if layout.name == "msu":
        lists = {s: root / f"{s}_sub_list.txt" for s in ("train", "test")}
        missing = [str(p) for p in lists.values() if not p.is_file()]
        if missing:
            raise UserError(f"MSU-MFSD client lists not found: {', '.join(missing)}; expected {layout.expected}")
        train, test = (read_subject_list(lists[s]) for s in ("train", "test"))
        if train & test:
            raise UserError(f"{lists['train']} and {lists['test']} share clients {sorted(train & test)}")
        info.update(train_subjects=sorted(train), test_subjects=sorted(test))
        kept = []
        for m in metas:
            n = int(m.subject_id)
            if n in train or n in test:
                kept.append(replace(m, split="train" if n in train else "test"))
            else:
                bad.append((m.rel_path, f"client {m.subject_id} is in neither train_sub_list.txt nor test_sub_list.txt"))
        metas = kept
    if layout.name in ("casia", "msu"):
        dev = set(carve_dev_subjects([m.subject_id for m in metas if m.split == "train"], dev_fraction))
        info.update(dev_fraction=dev_fraction, dev_subjects=sorted(dev, key=_subject_number))
        metas = [replace(m, split="dev") if m.subject_id in dev else m for m in metas]
    return metas, bad, info

