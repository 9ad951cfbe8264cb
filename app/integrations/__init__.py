"""Clients of outside services: GitHub, and the guard on URLs this server fetches."""
