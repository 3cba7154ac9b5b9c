package pgtest

import (
	"os"

	"golang.org/x/sys/unix"
)

// shm is where Linux's C library keeps POSIX shared memory: a tmpfs on
// every usual system.
const shm = "/dev/shm"

// shmNeeds is the free space /dev/shm must have to hold the clusters of
// the test binaries that run at once (go test runs one per core), each
// with its template and the copies a test makes.
const shmNeeds = 1 << 30

// tempRoot is where clusters' directories go: $TMPDIR when it is set, else
// /dev/shm when it is a writable tmpfs, else the system's temporary
// directory. A cluster writes thousands of small files (initdb, a copy per
// CREATE DATABASE, WAL) and keeps none of them: on a disk filesystem
// creating them costs the kernel more than PostgreSQL's work on them
// (ext4's inode allocator scanning recently freed inodes, in perf), on
// tmpfs little. A cluster takes 40-60 MB of memory there while it runs;
// a small /dev/shm (a container's 64 MB, say) is passed over for the
// temporary directory.
func tempRoot() string {
	if os.Getenv("TMPDIR") != "" {
		return os.TempDir()
	}
	var st unix.Statfs_t
	if unix.Statfs(shm, &st) == nil && st.Type == unix.TMPFS_MAGIC &&
		st.Bavail*uint64(st.Bsize) >= shmNeeds && unix.Access(shm, unix.W_OK) == nil {
		return shm
	}
	return os.TempDir()
}
