"""How the trading box reaches a GPU box: a small interface (`base`), the system OpenSSH client
(`ssh`), and the same steps on this machine (`local`)."""
