"""The example app in Debian's headless Chromium."""
