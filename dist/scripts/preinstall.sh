#!/bin/sh
# goreplica package, before its files are unpacked (deb preinst, rpm %pre):
# the goreplica system user and group, which own the configuration and the
# log directory and run the service. Never removed (files it owned could
# pass to a later account reusing its id).
set -e
if ! getent passwd goreplica >/dev/null; then
	if getent group goreplica >/dev/null; then
		group="-g goreplica"
	else
		group="-U"
	fi
	useradd --system $group --home-dir /nonexistent --no-create-home \
		--shell /usr/sbin/nologin --comment "goreplica replication daemon" goreplica
fi
