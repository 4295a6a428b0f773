"""The host suite: credrecovery used only as its documentation shows (see README.md here)."""
