"""cylstm's asv suite: the history of its speed (see ../README.md)."""
