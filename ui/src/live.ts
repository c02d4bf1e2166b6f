// Live changes from GET /api/v1/stream (server-sent events): the library sends
// the bearer header, which EventSource cannot, and resumes with Last-Event-ID
// after a drop, so the server replays what was missed.

import { fetchEventSource } from "@microsoft/fetch-event-source";
import { useEffect, useRef } from "preact/hooks";
import { token } from "./api";

/** Calls `changed` (at most every 300 ms, and again 0.5, 2 and 5 s after the last event) while mounted. */
export function useLive(query: string, changed: () => void) {
  // The page's latest callback, so a refetch uses its current filters.
  const latest = useRef(changed);
  latest.current = changed;
  useEffect(() => {
    const stop = new AbortController();
    let timers: number[] = [];
    let last = 0;
    const soon = () => {
      // Read models follow the stream, by milliseconds when the server is idle and by
      // more under load: refetch now, and again as the last change settles.
      const now = Date.now();
      if (now - last > 300) {
        last = now;
        latest.current();
      }
      timers.forEach(clearTimeout);
      timers = [500, 2000, 5000].map((ms) => window.setTimeout(() => latest.current(), ms));
    };
    fetchEventSource(`/api/v1/stream?${query}`, {
      headers: { Authorization: `Bearer ${token() ?? ""}` },
      signal: stop.signal,
      openWhenHidden: true,
      onmessage: soon,
    }).catch(() => undefined);
    return () => {
      stop.abort();
      timers.forEach(clearTimeout);
    };
  }, [query]);
}
