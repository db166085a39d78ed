-- wrk script: POST /orders with the token in TOKEN (scripts/bench-storage.sh); counts answers other than 201.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"items":[{"sku":"book","quantity":1,"unitPriceCents":1500}]}'
