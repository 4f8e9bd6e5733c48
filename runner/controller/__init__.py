"""The controller: a sandbox's lifecycle, its launch and hardening, staging, the Docker seam,
images and sessions.
"""
