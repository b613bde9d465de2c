// Fires onTick every intervalMs while the tab is visible, and once when it becomes visible again.
// Renders nothing. Wrapped by live.py as live_ticker; pages use it to ask the server "did anything
// I show change?" (the server answers from memory, see crm_app/live.py).
import React from "react";

export function LiveTicker({ onTick, intervalMs = 3000 }) {
  const tick = React.useRef(onTick);
  tick.current = onTick;
  React.useEffect(() => {
    const fire = () => {
      if (document.visibilityState === "visible" && tick.current) tick.current();
    };
    const timer = setInterval(fire, intervalMs);
    document.addEventListener("visibilitychange", fire);
    return () => {
      clearInterval(timer);
      document.removeEventListener("visibilitychange", fire);
    };
  }, [intervalMs]);
  return null;
}
