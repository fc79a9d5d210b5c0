"""Modal dialogs; each is a `ModalScreen[T]` that dismisses with the user's answer."""
