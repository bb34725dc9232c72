"""The parts of the demo account simulation, one business concept each.

``s2s_devtools.demo.generator`` wires them together and is the public entry
point; nothing outside the demo package should need these modules directly.
Dependencies point one way: ``periods`` and ``recording`` underlie everything;
then ``catalogue``, ``scripts``, ``refunds``, ``subscription_changes``;
``payments`` (uses refunds), ``invoices`` (payments, changes),
``subscriptions`` (invoices, changes) and ``customers`` (subscriptions,
payments).
"""
