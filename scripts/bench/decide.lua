-- wrk: POST /v1/decide with a tool call of a new run each time, so every
-- request is allowed and committed (history, breaker admission).
counter = 0
request = function()
  counter = counter + 1
  local body = '{"id":"b-' .. counter .. '","principal":{"pipeline":"orders_daily","agent":"monitor",' ..
    '"team":"data-platform","environment":"prod","run":"bench-' .. counter .. '"},' ..
    '"action":{"kind":"tool_call","tool":"warehouse.query","arguments":{"sql":"select count(*) from analytics.orders_daily where order_date = current_date - 1"}}}'
  return wrk.format("POST", "/v1/decide", {["content-type"] = "application/json"}, body)
end
