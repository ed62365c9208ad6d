"""The `ainative` command line: thin commands, each builds a config and calls one public function."""
