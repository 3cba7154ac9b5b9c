package ui

// FakeBackend is the tests' Backend, for the browser benchmark.
type FakeBackend = fakeBackend
