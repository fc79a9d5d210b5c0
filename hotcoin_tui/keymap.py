"""Every key binding, with the id users remap it by (`[tui.keymap]` in the config).

One table per place a binding lives (the app, the main screen, each dialog), so the help
screen, the footer and the config check all read the same source. Textual applies the
overrides (`App.set_keymap`); this module checks them first, so a typo in an id fails at
start with the list of valid ids instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from textual.binding import Binding
from textual.dom import DOMNode
from textual.keys import format_key

from engine.errors import ConfigError


@dataclass(frozen=True, slots=True)
class KeySpec:
    id: str
    key: str
    action: str
    description: str
    show: bool = True
    priority: bool = False

    def binding(self) -> Binding:
        return Binding(self.key, self.action, self.description, show=self.show, priority=self.priority, id=self.id)


# Close-all is a priority binding: it must work from every screen and every dialog, and even
# while the filter input (whose own ctrl+x is "cut") has focus.
CLOSE_ALL = KeySpec("close_all", "ctrl+x", "close_all", "Close ALL", priority=True)
EVERYWHERE: tuple[KeySpec, ...] = (CLOSE_ALL,)
# The app's other keys answer on the main and replay screens only: a dialog (a Textual modal
# screen) cuts them off and answers its own keys, and the priority ones. They are not priority
# bindings: those would run before a dialog's own keys and while the filter box has focus.
# Pause and resume share their id and key; the app enables the one that applies now, so the
# footer says what the key will do.
PAUSE = KeySpec("pause", "p", "pause", "Pause")
OUTSIDE_DIALOGS: tuple[KeySpec, ...] = (
    PAUSE,
    KeySpec("pause", "p", "resume", "Resume"),
    KeySpec("help", "question_mark", "help", "Help"),
    KeySpec("quit", "q", "quit", "Quit"),
)
APP: tuple[KeySpec, ...] = EVERYWHERE + OUTSIDE_DIALOGS
MAIN: tuple[KeySpec, ...] = (
    KeySpec("focus.candidates", "c", "show_panel('candidates')", "Candidates", show=False),
    KeySpec("focus.positions", "o", "show_panel('positions')", "Positions", show=False),
    KeySpec("focus.chart", "k", "show_panel('chart')", "Chart", show=False),
    KeySpec("focus.events", "e", "show_panel('events')", "Events", show=False),
    KeySpec("focus.state", "t", "show_panel('state')", "Engine state", show=False),
    KeySpec("filter", "slash", "filter", "Filter"),
    KeySpec("sort", "s", "cycle_sort", "Sort", show=False),
    KeySpec("interval", "i", "cycle_interval", "Interval", show=False),
    KeySpec("replay", "r", "replay", "Replay"),
)
REPLAY: tuple[KeySpec, ...] = (KeySpec("replay.back", "escape", "app.pop_screen", "Back"),)
DISMISS: tuple[KeySpec, ...] = (KeySpec("dialog.close", "escape", "close", "Close"),)
# In a dialog, a key that means something elsewhere does the natural thing there, under the
# same id (a remap moves both): the help and quit keys close the help; the pause key resumes
# the entries close-all paused.
HELP_DIALOG: tuple[KeySpec, ...] = (
    *DISMISS,
    KeySpec("help", "question_mark", "close", "Close help"),
    KeySpec("quit", "q", "close", "Close help"),
)
# The dialogs name their keys in their text (`live_keys`): the ones they name by themselves.
CLOSE_ALL_CANCEL = KeySpec("close_all.cancel", "escape,n", "cancel", "Cancel")
QUIT_CONFIRM = KeySpec("quit.confirm", "y", "confirm", "Quit anyway")
QUIT_CANCEL = KeySpec("quit.cancel", "escape,n", "cancel", "Stay")
CONFIRM_CLOSE_ALL: tuple[KeySpec, ...] = (
    KeySpec("close_all.confirm", "Y", "confirm", "Confirm (shift+y)"),
    CLOSE_ALL_CANCEL,
)
CLOSE_ALL_PROGRESS: tuple[KeySpec, ...] = (
    *DISMISS,
    KeySpec("pause", "p", "resume", "Resume new entries"),
)
QUIT_DIALOG: tuple[KeySpec, ...] = (QUIT_CONFIRM, QUIT_CANCEL)

# The help screen's sections.
ALL: tuple[tuple[str, tuple[KeySpec, ...]], ...] = (
    ("Everywhere", EVERYWHERE),
    ("Outside dialogs", OUTSIDE_DIALOGS),
    ("Main screen", MAIN),
    ("Replay", REPLAY),
    ("Help", HELP_DIALOG),
    ("Close-all dialog", CONFIRM_CLOSE_ALL),
    ("Close-all progress", CLOSE_ALL_PROGRESS),
    ("Quit dialog", QUIT_DIALOG),
)
# What answers together in each place, for the clash check.
LIVE: tuple[tuple[str, tuple[KeySpec, ...]], ...] = (
    ("main screen", APP + MAIN),
    ("replay", APP + REPLAY),
    ("help", EVERYWHERE + HELP_DIALOG),
    ("close-all dialog", EVERYWHERE + CONFIRM_CLOSE_ALL),
    ("close-all progress", EVERYWHERE + CLOSE_ALL_PROGRESS),
    ("quit dialog", EVERYWHERE + QUIT_DIALOG),
)


def bindings(specs: Iterable[KeySpec]) -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    """Textual bindings for one table (typed as `BINDINGS` expects)."""
    return [spec.binding() for spec in specs]


def known_ids() -> list[str]:
    return sorted({spec.id for _, specs in ALL for spec in specs})


def validate(overrides: Mapping[str, str]) -> dict[str, str]:
    """Check a config keymap: every id must exist and no key may do two things in one place.
    Returns it normalised (no spaces)."""
    valid = set(known_ids())
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(
            f"tui.keymap: unknown binding id(s) {', '.join(unknown)}; valid ids are {', '.join(sorted(valid))}"
        )
    normalised = {bid: ",".join(k.strip() for k in keys.split(",")) for bid, keys in overrides.items()}
    _refuse_clashes(normalised)
    return normalised


def _refuse_clashes(overrides: Mapping[str, str]) -> None:
    """One key, two bindings in the same place: Textual would quietly run one of them, so a
    remap of pause to `q` made quit unreachable by its key. One id on one key is one binding
    (pause and resume)."""
    for place, live in LIVE:
        owners: dict[str, list[str]] = {}
        for spec in live:
            for key in overrides.get(spec.id, spec.key).split(","):
                ids = owners.setdefault(key, [])
                if spec.id not in ids:
                    ids.append(spec.id)
        for key, ids in owners.items():
            if len(ids) > 1:
                raise ConfigError(
                    f"tui.keymap: key {_key_label(key)!r} is bound to {' and '.join(ids)} ({place}); "
                    "only one of them would work: give the others another key in [tui.keymap]"
                )


def effective_keys(spec: KeySpec, overrides: Mapping[str, str]) -> str:
    """The key(s) a binding answers to after the user's overrides, as a user reads them.

    Textual names printable keys (`question_mark`, `slash`, `comma`); a user presses `?`, `/`,
    `,`, so those are shown as the character. Other names (`ctrl+x`, `escape`, `f9`) stay."""
    return ",".join(_key_label(key) for key in overrides.get(spec.id, spec.key).split(","))


def _key_label(key: str) -> str:
    shown = format_key(key)
    return shown if len(shown) == 1 and shown.isascii() and shown.isprintable() else key


def live_keys(node: DOMNode, spec: KeySpec) -> str:
    """The key(s) `spec` answers to in the running app, as a sentence names them ("Esc or n",
    "ctrl+k"): read from the keymap Textual routes keys by (`App.set_keymap`, the validated
    `[tui.keymap]`), so a dialog's own text names what works after a remap. A dialog that
    spelled its keys out ("ctrl+x closes everything first") went on naming a key that did
    nothing once close-all was remapped. A dialog needs no overrides passed in for this: any
    widget of the app reaches its keymap."""
    keys = node.app._keymap.get(spec.id, spec.key)
    return " or ".join(_spoken_key(key) for key in keys.split(","))


def _spoken_key(key: str) -> str:
    """`_key_label`, with Escape as the dialogs have always written it."""
    return "Esc" if key == "escape" else _key_label(key)


def panel_keys(overrides: Mapping[str, str]) -> dict[str, str]:
    """Panel name -> its focus key(s), for the panel strip (`focus.positions` -> `positions`)."""
    return {
        spec.id.removeprefix("focus."): effective_keys(spec, overrides) for spec in MAIN if spec.id.startswith("focus.")
    }
