#!/bin/sh
# goreplica package, before its files are removed (deb prerm remove, rpm
# %preun 0; not on an upgrade): stop and disable the unit.
set -e
case "$1" in
remove|0)
	if [ -d /run/systemd/system ]; then
		systemctl stop goreplica.service || true
	fi
	systemctl --no-reload disable goreplica.service >/dev/null 2>&1 || true
	;;
esac
