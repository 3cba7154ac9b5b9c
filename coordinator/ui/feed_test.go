package ui

import (
	"bufio"
	"context"
	"sync/atomic"
	"testing"

	"github.com/meshnode/meshnode/internal/wire"
)

// gatedBackend builds a view only when the test lets it, so that the test
// decides when each build happens.
type gatedBackend struct {
	fakeBackend
	permit chan struct{}
	done   chan struct{}
	builds atomic.Int32
}

func (g *gatedBackend) View(ctx context.Context) (View, error) {
	select {
	case <-g.permit:
	case <-g.done:
		return View{}, context.Canceled
	}
	g.builds.Add(1)
	return g.fakeBackend.View(ctx)
}

// Several open pages share one build of the view per interval: a change
// reaches all of them from one build.
func TestOpenPagesShareOneBuildOfTheView(t *testing.T) {
	t.Parallel()
	const pages = 3
	back := &gatedBackend{permit: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { close(back.done) })
	back.SetView(View{Nodes: []wire.Node{{Name: "a"}}})
	p := newPageOn(t, back, &back.fakeBackend)
	var streams []*bufio.Scanner
	for range pages {
		sc, _ := p.events(t)
		streams = append(streams, sc)
	}
	next := func(sc *bufio.Scanner) View { t.Helper(); return nextView(t, sc) }
	back.permit <- struct{}{}
	for i, sc := range streams {
		if v := next(sc); len(v.Nodes) != 1 {
			t.Fatalf("page %d: first view %+v", i, v)
		}
	}
	back.SetView(View{Nodes: []wire.Node{{Name: "a"}, {Name: "b"}}})
	back.permit <- struct{}{}
	for i, sc := range streams {
		if v := next(sc); len(v.Nodes) != 2 {
			t.Fatalf("page %d: changed view %+v", i, v)
		}
	}
	if n := back.builds.Load(); n != 2 {
		t.Errorf("%d pages saw two views from %d builds, want 2", pages, n)
	}
}
