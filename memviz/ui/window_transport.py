"""The window's transport slots: step, scrub, play, reset and generate handed to the playback
controller, the actions enabled as it says, and the keys moved between editor and player. A mixin
for MainWindow."""

from __future__ import annotations

from memviz.errors import MemvizError


class TransportSlots:
    """MainWindow's transport slots, handed to `playback`, and where the keys go."""

    def _update_actions(self) -> None:
        enabled = self.playback.enabled()
        t = self.transport
        for name, action in (
            ("reset", t.reset_action),
            ("back", t.back_action),
            ("forward", t.forward_action),
            ("play", t.play_action),
            ("generate", self.generate_bar.generate_action),
        ):
            action.setEnabled(enabled[name])

    def step_forward(self) -> None:
        self.playback.step_forward()

    def step_back(self) -> None:
        self.playback.step_back()

    def scrub_to(self, index: int) -> None:
        self.playback.scrub_to(index)

    def set_playing(self, playing: bool) -> None:
        self.playback.set_playing(playing)

    def toggle_play(self) -> None:
        self.playback.toggle_play()

    def reset(self) -> None:
        self.playback.reset()

    def generate(self) -> None:
        """Generate N tokens after what has been read, with the sampling settings of the bar."""
        if self.info is None:
            self.message("load a model to generate")
            return
        try:
            sampling = self.generate_bar.sampling()
        except MemvizError as exc:
            self.message(str(exc))
            return
        self.playback.generate(self.generate_bar.tokens(), sampling)

    def _run_from_editor(self) -> None:
        """Ctrl+Enter in the editor: read its text, and hand the keys to the player."""
        self.give_keys_to_player()
        self.playback.play_text()

    def give_keys_to_player(self) -> None:
        """Focus leaves the editor: Space plays, Left / Right step, Home resets (Esc, Ctrl+Enter)."""
        self.strip.setFocus()

    def toggle_editor_focus(self) -> None:
        if self.editor.hasFocus():
            self.give_keys_to_player()
        else:
            self.editor.setFocus()

    def _on_focus_changed(self, _old, new) -> None:
        self.status.show_keys(editing=new is self.editor)
