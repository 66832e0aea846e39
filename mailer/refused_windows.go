package mailer

import (
	"errors"
	"syscall"
)

// wsaeconnrefused is Winsock's "connection refused" (WSAECONNREFUSED):
// Windows returns it where Unix returns ECONNREFUSED, and syscall's
// ECONNREFUSED on Windows is a different, invented number.
const wsaeconnrefused syscall.Errno = 10061

// refused reports whether err is a refused TCP connection.
func refused(err error) bool {
	return errors.Is(err, wsaeconnrefused) || errors.Is(err, syscall.ECONNREFUSED)
}
