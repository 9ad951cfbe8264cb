"""GitHub gists, with local records, and gists written by chat (`/chat/gist`)."""
