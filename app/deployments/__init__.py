"""Deployments: from a brief, an LLM writes a static web app, pushed to GitHub Pages; an evaluator is notified."""
