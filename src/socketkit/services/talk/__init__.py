"""Talk: an operator at the server console talking with many clients at once (the
tutorial's stories 2 and 3 and its concurrent chat, done right)."""
