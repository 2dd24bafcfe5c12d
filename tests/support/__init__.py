"""Helpers the tests share: real daemons and rigs, SSH keys and servers, audit history,
Chromium, hostile inputs. (The servers themselves are in ``tests.servers``.)"""
