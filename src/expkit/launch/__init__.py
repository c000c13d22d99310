"""Starting the processes of a distributed run (Hydra side; the engine never imports this)."""
