"""The CI gate (perfsentinel check) and its reports."""
