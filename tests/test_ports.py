"""Ports for our servers come from below the ephemeral range, where outgoing connections cannot
take them between the probe and the server's bind."""

from __future__ import annotations

import socket

from agentfleet import ports


def test_ports_are_free_distinct_and_outside_the_ephemeral_range() -> None:
    low, _ = ports.ephemeral_range()
    chosen = [ports.free_port() for _ in range(50)]
    assert len(set(chosen)) == len(chosen)
    assert all(ports.LOW <= port < low for port in chosen), chosen
    for port in chosen:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))  # each one binds


def test_a_port_in_use_is_passed_over() -> None:
    taken = ports.free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        ports._next = taken - ports.LOW  # the walk is at the taken port
        assert ports.free_port() != taken
