"""The agent: a model that calls tools in a loop (`loop.AgentLoop`), the tool choice per step
(`choice`), the events a front end renders (`events`) and the grounding of answers in what the
tools returned (`grounding`). `quark.chat.session.ChatSession` drives it for the TUI, scripted
chat and evals.
"""
