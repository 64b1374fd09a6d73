"""The watcher: matches newly indexed articles against the saved watches and delivers them."""
