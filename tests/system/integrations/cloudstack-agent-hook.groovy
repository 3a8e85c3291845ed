// Call a CloudStack KVM agent XML transformer hook the way the agent does.
//
// Usage: groovy cloudstack-agent-hook.groovy BASEDIR SCRIPT METHOD XML_FILE
//
// Follows the contract of apache/cloudstack's LibvirtKvmAgentHook.java
// (plugins/hypervisors/kvm/src/main/java/com/cloud/hypervisor/kvm/resource/),
// written for vhostfix's tests: a GroovyScriptEngine rooted at BASEDIR runs
// SCRIPT with a fresh Binding; the value the script evaluates to is taken as
// a GroovyObject and METHOD is invoked on it with (logger, xml). The returned
// XML is printed on stdout. The logger stands in for the agent's log4j
// logger: it has the same info/warn/error/debug(String) calls and prints
// "LEVEL message" lines on stderr.

class StandInLogger {
    void debug(Object m) { System.err.println("DEBUG ${m}") }
    void info(Object m) { System.err.println("INFO ${m}") }
    void warn(Object m) { System.err.println("WARN ${m}") }
    void error(Object m) { System.err.println("ERROR ${m}") }
}

def (basedir, script, method, xmlFile) = args as List
String xml = new File(xmlFile).getText('UTF-8')
def engine = new GroovyScriptEngine(basedir as String)
def transformer = (GroovyObject) engine.run(script as String, new Binding())
Object[] params = [new StandInLogger(), xml]
def result = transformer.invokeMethod(method as String, params)
System.out.print(result as String)
