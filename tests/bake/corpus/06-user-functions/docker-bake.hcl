function "tag" {
  params = [repo, version]
  result = ["${repo}:${version}", "${repo}:latest"]
}
function "joined" {
  params          = [sep]
  variadic_params = parts
  result          = join(sep, parts)
}
function "twice" {
  params = [s]
  result = joined("-", s, s)
}
target "default" {
  tags = tag("acme/api", "3.1")
  args = {
    PATH_ARG = joined("/", "usr", "local", "bin")
    TWICE    = twice("x")
  }
}
