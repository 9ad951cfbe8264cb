"""Conversations: persisted chats, their history and the system prompt file."""
