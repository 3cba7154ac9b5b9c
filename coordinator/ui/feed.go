package ui

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/meshnode/meshnode/internal/ratelog"
)

// buildTimeout bounds one build of the view: a store that hangs must not
// hold the feed (and every open page) forever.
const buildTimeout = 10 * time.Second

// feed builds the view once per interval for every open event stream,
// however many pages are open: a build reads every node and pair from the
// store, and at 500 nodes it is most of the page's cost. One goroutine
// owns the building; it runs while at least one stream is subscribed.
type feed struct {
	view  func(context.Context) (View, error)
	every time.Duration
	log   *ratelog.Logger

	mu      sync.Mutex
	subs    int
	running bool
	latest  []byte        // the view's JSON, nil before the first build
	version uint64        // counts changes of latest
	changed chan struct{} // closed, and replaced, when latest changes
}

func newFeed(view func(context.Context) (View, error), every time.Duration, log *slog.Logger) *feed {
	// One warning a minute: a failing store fails every build.
	return &feed{view: view, every: every, log: ratelog.New(log, time.Minute, 1), changed: make(chan struct{})}
}

// subscribe counts a stream in, starting the builder if it was idle; the
// stream calls the returned function when it ends.
func (f *feed) subscribe() (unsubscribe func()) {
	f.mu.Lock()
	f.subs++
	start := !f.running
	f.running = true
	f.mu.Unlock()
	if start {
		go f.run()
	}
	return func() {
		f.mu.Lock()
		f.subs--
		f.mu.Unlock()
	}
}

// current returns the latest view, its version and a channel closed when
// a newer one is out.
func (f *feed) current() ([]byte, uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest, f.version, f.changed
}

// run builds the view every interval until no stream is left. A failed
// build keeps the last view: the pages show it until the store answers.
func (f *feed) run() {
	tick := time.NewTicker(f.every)
	defer tick.Stop()
	for {
		f.mu.Lock()
		if f.subs == 0 {
			f.running = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		if b, err := f.build(); err != nil {
			f.log.Warn("web page view", "err", err)
		} else {
			f.publish(b)
		}
		<-tick.C
	}
}

func (f *feed) build() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	v, err := f.view(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// publish makes b the latest view when it differs from the one before.
func (f *feed) publish(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.latest != nil && string(f.latest) == string(b) {
		return
	}
	f.latest = b
	f.version++
	close(f.changed)
	f.changed = make(chan struct{})
}
