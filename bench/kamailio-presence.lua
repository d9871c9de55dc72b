-- bench/kamailio-presence.lua — KEMI Lua routing for bench/kamailio-presence.cfg:
-- PUBLISH and SUBSCRIBE (initial and in-dialog) to the presence module,
-- as Kamailio's default configuration does; anything else 404.
function ksr_request_route()
  if KSR.maxfwd.process_maxfwd(10) < 0 then
    KSR.sl.sl_send_reply(483, "Too Many Hops")
    return 1
  end
  if KSR.is_PUBLISH() or KSR.is_SUBSCRIBE() then
    if KSR.tm.t_newtran() < 0 then
      KSR.sl.sl_reply_error()
      return 1
    end
    if KSR.is_PUBLISH() then KSR.presence.handle_publish() else KSR.presence.handle_subscribe() end
    KSR.tm.t_release()
    return 1
  end
  KSR.sl.sl_send_reply(404, "Not here")
  return 1
end
