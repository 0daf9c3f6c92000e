// Playwright init script for the NetLab tests: keeps every RTCPeerConnection the page creates
// (the real Rondpoint page or livekit-client) and samples their getStats() into a bounded
// timeline, read by the test through window.netlab. Nothing else of the page changes.
(() => {
  const Native = window.RTCPeerConnection;
  const pcs = [];
  function Recorded(...args) {
    const pc = new Native(...args);
    pcs.push(pc);
    return pc;
  }
  Recorded.prototype = Native.prototype;
  Object.setPrototypeOf(Recorded, Native);
  window.RTCPeerConnection = Recorded;

  const MAX_SAMPLES = 3000;
  const timeline = [];
  let timer = null;
  let busy = false;
  const pick = (s, keys) => Object.fromEntries(keys.filter((k) => s[k] !== undefined).map((k) => [k, s[k]]));
  const INBOUND = [
    "kind", "ssrc", "mid", "trackIdentifier", "frameHeight", "frameWidth", "framesDecoded",
    "framesReceived", "framesDropped", "freezeCount", "totalFreezesDuration", "pauseCount",
    "concealedSamples", "silentConcealedSamples", "totalSamplesReceived", "packetsLost",
    "packetsReceived", "nackCount", "pliCount", "retransmittedPacketsReceived", "bytesReceived",
    "jitter", "keyFramesDecoded",
  ];
  const OUTBOUND = [
    "kind", "ssrc", "rid", "mid", "frameHeight", "frameWidth", "framesSent", "framesEncoded",
    "bytesSent", "packetsSent", "retransmittedPacketsSent", "retransmittedBytesSent", "nackCount",
    "pliCount", "qualityLimitationReason", "active", "targetBitrate",
  ];
  const PAIR = [
    "availableOutgoingBitrate", "availableIncomingBitrate", "currentRoundTripTime", "bytesSent",
    "bytesReceived",
  ];

  async function sample() {
    const out = { t: performance.now() / 1000, inbound: [], outbound: [], pairs: [] };
    for (const [index, pc] of pcs.entries()) {
      if (pc.connectionState === "closed") continue;
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === "inbound-rtp") out.inbound.push({ pc: index, ...pick(s, INBOUND) });
        else if (s.type === "outbound-rtp") out.outbound.push({ pc: index, ...pick(s, OUTBOUND) });
        else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded")
          out.pairs.push({ pc: index, ...pick(s, PAIR) });
      });
    }
    return out;
  }

  window.netlab = {
    pcCount: () => pcs.length,
    sample,
    start(intervalMs) {
      if (timer !== null) return;
      timer = setInterval(async () => {
        if (busy) return;
        busy = true;
        try {
          const s = await sample();
          if (timeline.length >= MAX_SAMPLES) timeline.shift();
          timeline.push(s);
        } finally {
          busy = false;
        }
      }, intervalMs);
    },
    stop() {
      clearInterval(timer);
      timer = null;
    },
    take() {
      return timeline.splice(0);
    },
  };
})();
