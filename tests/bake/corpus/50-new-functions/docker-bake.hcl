# buildx functions polyarch lacked before (indexof in a matrix, hashes, dates, sets, semver, cidr, csv, convert);
# a group "default" naming the target "default" is that target, not a cycle (buildx)
variable "APP_VERSIONS" {
  default = ["1.42.4", "1.42.3"]
}
variable "EMPTY" {}
target "app" {
  matrix = { v = APP_VERSIONS }
  name   = "app-${replace(v, ".", "-")}"
  args   = { V = v, EMPTY_IS_EMPTY = equal(EMPTY, "") }
  tags   = compact(["app:${v}", indexof(APP_VERSIONS, v) == 0 ? "app:latest" : ""])
}
target "default" {
  args = {
    md5     = md5("hello world")
    sha256  = substr(sha256("hello world"), 0, 12)
    date    = formatdate("YYYYMMDD-hhmm", timeadd("2024-02-28T23:30:00Z", "1h"))
    sets    = join(",", setunion(["b", "a"], ["c", "a"]))
    semver  = semvercmp("1.22.3", "~1.22")
    subnets = join(" ", cidrsubnets("10.0.0.0/16", 8, 8))
    csv     = csvdecode("name,arch\nx,arm64\n")[0].arch
    number  = convert("42", number) + 1
    parsed  = parseint("ff", 16)
    urlenc  = urlencode("a b&c")
    uuid    = uuidv5("dns", "example.com")
  }
}
group "default" {
  targets = ["default", "app"]
}
